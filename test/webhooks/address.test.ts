import { describe, expect, it } from "vitest";
import { type AddressClass, checkAddress, classifyAddress } from "../../src/adapters/webhooks/address.js";

const TABLE: [string, AddressClass][] = [
  ["127.0.0.1", "loopback"],
  ["127.255.1.2", "loopback"],
  ["::1", "loopback"],
  ["10.0.0.1", "private"],
  ["10.255.255.255", "private"],
  ["172.16.0.1", "private"],
  ["172.31.255.254", "private"],
  ["172.32.0.1", "public"],
  ["172.15.255.255", "public"],
  ["192.168.1.1", "private"],
  ["100.64.0.1", "private"],
  ["100.127.255.255", "private"],
  ["100.128.0.1", "public"],
  ["fc00::1", "private"],
  ["fd12:3456::1", "private"],
  ["169.254.0.1", "link_local"],
  ["169.254.169.253", "link_local"],
  ["fe80::1", "link_local"],
  ["fe80::1%eth0", "link_local"],
  ["febf::1", "link_local"],
  ["169.254.169.254", "metadata"],
  ["fd00:ec2::254", "metadata"],
  ["fd00:ec2:0:0:0:0:0:254", "metadata"],
  ["0.0.0.0", "unspecified"],
  ["0.1.2.3", "unspecified"],
  ["::", "unspecified"],
  ["255.255.255.255", "unspecified"],
  ["224.0.0.1", "multicast"],
  ["239.255.255.250", "multicast"],
  ["ff02::1", "multicast"],
  ["8.8.8.8", "public"],
  ["93.184.216.34", "public"],
  ["2606:4700:4700::1111", "public"],
  // IPv4 inside IPv6 is judged as the IPv4 address it reaches.
  ["::ffff:127.0.0.1", "loopback"],
  ["::ffff:7f00:1", "loopback"],
  ["::ffff:10.1.2.3", "private"],
  ["::ffff:169.254.169.254", "metadata"],
  ["::ffff:8.8.8.8", "public"],
  ["0:0:0:0:0:ffff:c0a8:0101", "private"],
  ["64:ff9b::127.0.0.1", "loopback"],
  ["2002:a9fe:a9fe::", "metadata"],
  ["2002:0808:0808::1", "public"],
  ["[::1]", "loopback"],
];

describe("classifyAddress", () => {
  it.each(TABLE)("%s is %s", (ip, kind) => {
    expect(classifyAddress(ip)).toBe(kind);
  });

  it("throws for a host name or garbage rather than guessing", () => {
    expect(() => classifyAddress("localhost")).toThrow(/not an IPv4 or IPv6 address/);
    expect(() => classifyAddress("127.1")).toThrow(/not an IPv4 or IPv6 address/);
    expect(() => classifyAddress("0x7f.0.0.1")).toThrow(/not an IPv4 or IPv6 address/);
  });
});

describe("checkAddress", () => {
  it("refuses link-local, metadata, unspecified and multicast even with allow_private", () => {
    for (const ip of [
      "169.254.1.1",
      "fe80::1",
      "169.254.169.254",
      "fd00:ec2::254",
      "0.0.0.0",
      "::",
      "224.0.0.1",
    ]) {
      const v = checkAddress(ip, true);
      expect(v.ok, ip).toBe(false);
      if (!v.ok) expect(v.reason).toContain(ip);
    }
  });

  it("refuses loopback and private addresses unless the origin allows private targets", () => {
    for (const ip of ["127.0.0.1", "::1", "10.0.0.5", "192.168.0.10", "fd12::1", "::ffff:127.0.0.1"]) {
      const refused = checkAddress(ip, false);
      expect(refused.ok, ip).toBe(false);
      if (!refused.ok) expect(refused.reason).toMatch(/allow_private: true/);
      expect(checkAddress(ip, true), ip).toEqual({ ok: true });
    }
  });

  it("accepts public addresses either way", () => {
    expect(checkAddress("8.8.8.8", false)).toEqual({ ok: true });
    expect(checkAddress("2606:4700:4700::1111", false)).toEqual({ ok: true });
  });

  it("refuses what is not an address, with a reason", () => {
    expect(checkAddress("example.com", true)).toEqual({
      ok: false,
      reason: '"example.com" is not an IPv4 or IPv6 address',
    });
  });
});
