/**
 * Safe display of text that an agent (or any untrusted party) wrote.
 *
 * Approvers decide on what a card shows them, so an agent must not be able to hide
 * characters, reorder them on screen, mention `@channel`, make a link or pass its words
 * for ours. The rules, in the order they apply:
 *
 * 1. `showInvisible`: characters that render as nothing or move other characters
 *    (bidirectional controls, zero-width and other default-ignorable characters, C0/C1
 *    controls other than newline and tab, line/paragraph separators, lone surrogates)
 *    become visible markers such as `[U+202E]`. Variation selectors stay, since emoji
 *    need them and they cannot reorder or hide text.
 * 2. `escapeMrkdwn`: Slack's three control characters `&`, `<`, `>` become entities, so
 *    no `<!channel>`, `<@U...>`, `<#C...>` or `<https://...|label>` can form.
 * 3. Every section that carries agent text is sent with `verbatim: true`, so Slack does
 *    not auto-link bare URLs, channel names or `@here`.
 *
 * What is deliberately NOT rewritten: mrkdwn emphasis characters (`*`, `_`, `~`, `` ` ``).
 * Slack has no escape for them, and the known workarounds change the agent's characters
 * (look-alike substitutes, inserted zero-width spaces), which would make the card lie
 * about what was asked. `verbatim: true` does not stop Slack from rendering `*bold*`;
 * what stops formatted agent text from passing for the card's own text is structure,
 * which the Block Kit builders enforce: agent text sits after our label on one line
 * (line breaks shown as `↵`), in its own field, or inside a quote bar, and formatting
 * cannot cross from one text object into another.
 */

/** A line break inside text that must stay on one line. */
export const LINE_BREAK_MARK = "↵";

// Default_Ignorable_Code_Point covers the bidi controls (U+061C, U+200E/F, U+202A-E,
// U+2066-9), the zero-width characters (U+200B-D, U+2060-4, U+FEFF), U+00AD, U+180E,
// the Hangul fillers, and the tag characters (U+E0000-E007F). Cc covers C0/C1 controls;
// U+2028/2029 and the interlinear annotation marks break or hide text in some clients;
// [\uD800-\uDFFF] in a `u` regex matches only lone surrogates (I-JSON forbids them, but a
// renderer must not trust that the validator ran).
const HIDDEN = /[\p{Default_Ignorable_Code_Point}\p{Cc}\u2028\u2029\uFFF9-\uFFFB\uD800-\uDFFF]/gu;

function isKeptException(cp: number): boolean {
  return (
    cp === 0x0a || // newline
    cp === 0x09 || // tab
    (cp >= 0xfe00 && cp <= 0xfe0f) || // variation selectors
    (cp >= 0xe0100 && cp <= 0xe01ef) || // variation selectors supplement
    (cp >= 0x180b && cp <= 0x180d) || // Mongolian free variation selectors
    cp === 0x180f
  );
}

/** `[U+202E]`: at least four upper-case hex digits. */
export function codePointMarker(cp: number): string {
  return `[U+${cp.toString(16).toUpperCase().padStart(4, "0")}]`;
}

/**
 * Replaces every invisible, reordering or control character with a visible marker such
 * as `[U+202E]`. Newline and tab stay; so do variation selectors.
 */
export function showInvisible(s: string): string {
  return s.replace(HIDDEN, (ch) => {
    const cp = ch.codePointAt(0)!;
    return isKeptException(cp) ? ch : codePointMarker(cp);
  });
}

/** Slack's three: `&` -> `&amp;`, `<` -> `&lt;`, `>` -> `&gt;`. Nothing else changes. */
export function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const WORD = /[\p{L}\p{M}\p{N}]+/gu;
const LATIN = /\p{Script=Latin}/u;
const LOOKALIKE_SCRIPT = /[\p{Script=Cyrillic}\p{Script=Greek}]/u;

/**
 * True when some word mixes Latin letters with Cyrillic or Greek ones, the classic
 * look-alike trick (`pаypal` with a Cyrillic `а`). Words made wholly of one script are
 * not flagged: Russian or Greek text is legitimate, and whole-word confusables need a
 * confusables table that this check does not carry.
 */
export function hasMixedScripts(s: string): boolean {
  for (const m of s.matchAll(WORD)) {
    const word = m[0];
    if (LATIN.test(word) && LOOKALIKE_SCRIPT.test(word)) return true;
  }
  return false;
}

/**
 * What every agent-provided string goes through before it enters mrkdwn:
 * `escapeMrkdwn(showInvisible(s))`. Characters are kept (see the module comment for why
 * emphasis characters are not rewritten); the text must be placed in a `verbatim: true`
 * section by the caller.
 */
export function agentText(s: string): string {
  return escapeMrkdwn(showInvisible(s));
}

/** Replaces line breaks with a visible `↵`, for text that must stay on one line. */
export function oneLine(s: string): string {
  return s.replace(/\r\n|\n|\r|\u2028|\u2029/g, LINE_BREAK_MARK);
}

/**
 * For `plain_text` fields (header, modal text): Slack renders no markup there, so only
 * invisible characters are made visible, and line breaks become `↵` so the text stays
 * on one line.
 */
export function plainAgentText(s: string): string {
  return showInvisible(oneLine(s));
}

/** `1234567` -> `1,234,567` without depending on the runtime's locale data. */
export function groupDigits(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function defaultCutNote(cut: number): string {
  return `… (${groupDigits(cut)} more ${cut === 1 ? "character" : "characters"} cut)`;
}

// The units a cut never splits: an entity from escapeMrkdwn, a marker from showInvisible,
// a Slack token of our own (`<@U123>`, `<!date^...>`), else one code point (the `u` flag
// keeps a surrogate pair together).
const TOKEN = /&(?:amp|lt|gt);|\[U\+[0-9A-F]{4,6}\]|<[^<>\n]{1,300}>|[\s\S]/gu;

/**
 * Shortens `s` so that the result, note included, is at most `max` UTF-16 code units.
 * Code units are the stricter measure (an emoji is one code point but two units), so the
 * result fits Slack's limits whichever way Slack counts.
 *
 * The cut falls between code points and never inside an entity (`&amp;`), a
 * `[U+XXXX]` marker or a `<...>` token. `cut` counts the characters removed as a reader
 * would: an entity, marker or token is one. `note(cut)` is appended when something was
 * cut (default `… (1,234 more characters cut)`); if even the note cannot fit in `max`,
 * the text is cut without it.
 */
export function truncateCodePoints(
  s: string,
  max: number,
  note: (cut: number) => string = defaultCutNote,
): { text: string; cut: number } {
  if (s.length <= max) return { text: s, cut: 0 };
  const limit = Math.max(0, Math.floor(max));
  const tokens = s.match(TOKEN) ?? [];
  const total = tokens.length;
  // prefix[k] = length of the first k tokens
  const prefix = new Array<number>(total + 1);
  prefix[0] = 0;
  for (let i = 0; i < total; i++) prefix[i + 1] = prefix[i]! + tokens[i]!.length;

  const largestWithin = (budget: number): number => {
    let lo = 0;
    let hi = total;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (prefix[mid]! <= budget) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };

  const fits = (k: number): boolean => prefix[k]! + note(total - k).length <= limit;
  // The note for the largest possible cut is (for any sane note) the longest, so this k
  // fits; then walk up while a shorter number lets more text in, and down if a custom
  // note broke that assumption.
  let k = largestWithin(limit - note(total).length);
  while (k < total - 1 && fits(k + 1)) k++;
  while (k > 0 && !fits(k)) k--;
  if (!fits(k)) {
    const bare = largestWithin(limit);
    return { text: tokens.slice(0, bare).join(""), cut: total - bare };
  }
  return { text: tokens.slice(0, k).join("") + note(total - k), cut: total - k };
}
