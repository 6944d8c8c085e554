/**
 * Where a callback may go. A callback URL names a host an agent chose;
 * without this check it would let an agent make Countersign call its own admin ports, the
 * office network or the cloud's metadata service (server-side request forgery).
 * Addresses that carry an IPv4 address inside IPv6 are judged as that IPv4 address, since
 * that is where the packets end up.
 */
import { isIP } from "node:net";

export type AddressClass =
  | "loopback"
  | "private"
  | "link_local"
  | "metadata"
  | "public"
  | "unspecified"
  | "multicast";

export type AddressVerdict = { ok: true } | { ok: false; reason: string };

type V4 = readonly [number, number, number, number];

function v4InRange(a: V4, base: V4, bits: number): boolean {
  const n = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) >>> 0;
  const b = ((base[0] << 24) | (base[1] << 16) | (base[2] << 8) | base[3]) >>> 0;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (n & mask) >>> 0 === (b & mask) >>> 0;
}

const V4_METADATA: readonly V4[] = [
  [169, 254, 169, 254], // AWS, GCP, Azure, OCI, OpenStack instance metadata
  [168, 63, 129, 16], // Azure's host "wire server": public-looking, but inside Azure it is the platform
];

function classifyV4(a: V4): AddressClass {
  if (V4_METADATA.some((m) => m.every((byte, i) => a[i] === byte))) return "metadata";
  // 0.0.0.0/8 is "this network"; Linux connects 0.0.0.0 to the local host.
  if (a[0] === 0) return "unspecified";
  if (a[0] === 127) return "loopback";
  if (v4InRange(a, [169, 254, 0, 0], 16)) return "link_local";
  if (
    a[0] === 10 ||
    v4InRange(a, [172, 16, 0, 0], 12) ||
    v4InRange(a, [192, 168, 0, 0], 16) ||
    v4InRange(a, [100, 64, 0, 0], 10) || // carrier-grade NAT; Alibaba's metadata sits here too
    v4InRange(a, [198, 18, 0, 0], 15) // benchmarking networks, used inside some data centres
  ) {
    return "private";
  }
  if (v4InRange(a, [224, 0, 0, 0], 4)) return "multicast";
  // 240.0.0.0/4, broadcast included: reserved, no single host answers there.
  if (v4InRange(a, [240, 0, 0, 0], 4)) return "unspecified";
  return "public";
}

function parseV4(ip: string): V4 {
  const parts = ip.split(".").map(Number);
  return [parts[0]!, parts[1]!, parts[2]!, parts[3]!];
}

/** 16 bytes of an IPv6 address that `isIP` has already accepted (zone id removed). */
function parseV6(ip: string): number[] {
  let text = ip;
  const lastColon = ip.lastIndexOf(":");
  if (ip.slice(lastColon + 1).includes(".")) {
    // A dotted IPv4 tail stands for the last two groups.
    const v4 = parseV4(ip.slice(lastColon + 1));
    const hi = ((v4[0] << 8) | v4[1]).toString(16);
    const lo = ((v4[2] << 8) | v4[3]).toString(16);
    text = `${ip.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const [head, rest] = text.includes("::") ? text.split("::") : [text, undefined];
  const groups = (s: string | undefined) => (s ? s.split(":").map((g) => Number.parseInt(g, 16)) : []);
  const h = groups(head);
  const r = groups(rest);
  const all = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

function classifyV6(b: number[]): AddressClass {
  const zeros = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const embedded = (at: number): V4 => [b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!];
  if (zeros(0, 16)) return "unspecified";
  if (zeros(0, 15) && b[15] === 1) return "loopback";
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (the old "compatible" form) reach the IPv4 host.
  if (zeros(0, 10) && ((b[10] === 0xff && b[11] === 0xff) || (b[10] === 0 && b[11] === 0))) {
    return classifyV4(embedded(12));
  }
  // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) gateways forward to the embedded IPv4 host.
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) {
    return classifyV4(embedded(12));
  }
  if (b[0] === 0x20 && b[1] === 0x02) return classifyV4(embedded(2));
  // fd00:ec2::254, the AWS metadata service over IPv6.
  if (b[0] === 0xfd && b[1] === 0x00 && b[2] === 0x0e && b[3] === 0xc2 && zeros(4, 14)) {
    if (b[14] === 0x02 && b[15] === 0x54) return "metadata";
  }
  if ((b[0]! & 0xfe) === 0xfc) return "private"; // fc00::/7 unique local
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return "link_local"; // fe80::/10
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0xc0) return "private"; // fec0::/10, the retired site-local
  if (b[0] === 0xff) return "multicast";
  return "public";
}

/** Throws when `ip` is not an IPv4 or IPv6 address (a host name is not an address). */
export function classifyAddress(ip: string): AddressClass {
  const bare = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip;
  const zoneless = bare.split("%")[0]!;
  const version = isIP(zoneless);
  if (version === 4) return classifyV4(parseV4(zoneless));
  if (version === 6) return classifyV6(parseV6(zoneless));
  throw new Error(`"${ip}" is not an IPv4 or IPv6 address`);
}

const REFUSED_ALWAYS: Partial<Record<AddressClass, string>> = {
  link_local: "a link-local address",
  metadata: "a cloud metadata service address",
  unspecified: "not a single host's address (unspecified or reserved)",
  multicast: "a multicast address",
};

/**
 * May a callback connect to `ip`? Link-local, metadata, unspecified and multicast
 * addresses never; loopback and private ones only when the agent's callback origin is
 * listed with `allow_private: true` (`allowPrivate`).
 */
export function checkAddress(ip: string, allowPrivate: boolean): AddressVerdict {
  let kind: AddressClass;
  try {
    kind = classifyAddress(ip);
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  const always = REFUSED_ALWAYS[kind];
  if (always !== undefined) return { ok: false, reason: `${ip} is ${always}; callbacks never go there` };
  if ((kind === "loopback" || kind === "private") && !allowPrivate) {
    return {
      ok: false,
      reason: `${ip} is a ${kind} address; callbacks go there only when the agent's callback origin is listed with allow_private: true`,
    };
  }
  return { ok: true };
}
