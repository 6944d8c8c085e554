/**
 * Block Kit limit checks, as Slack applies them when a message or a view is sent.
 *
 * The point is to fail locally where Slack would fail in production: a card that is one
 * character over a limit is refused by Slack as a whole (`invalid_blocks`), so the
 * stand-in must refuse it too, or the product would ship a card Slack never shows.
 * Problems are phrased the way Slack phrases them ("must be less than 3001 characters")
 * followed by what was seen, and end with Slack's `[json-pointer:/blocks/0/text/text]`
 * marker so a person can find the offending field.
 *
 * Lengths are counted in UTF-16 code units (`String.length`), which is never less than
 * the code-point count Slack may use, so a card accepted here is not over Slack's limit.
 */

export type Surface = "message" | "modal" | "home";

/** Slack's published limits; the numbers are the largest allowed value. */
export const BLOCK_KIT_LIMITS = {
  blocks: { message: 50, modal: 100, home: 100 },
  sectionText: 3000,
  sectionField: 2000,
  sectionFields: 10,
  headerText: 150,
  buttonText: 75,
  buttonValue: 2000,
  url: 3000,
  id: 255,
  actionsElements: 25,
  contextElements: 10,
  inputLabel: 2000,
  inputHint: 2000,
  placeholder: 150,
  optionText: 75,
  optionValue: 150,
  options: 100,
  choiceOptions: 10,
  overflowOptions: 5,
  confirmTitle: 100,
  confirmText: 300,
  confirmButton: 30,
  imageAltText: 2000,
  markdownText: 12000,
  textInputLength: 3000,
  viewTitle: 24,
  viewButton: 24,
  privateMetadata: 3000,
  callbackId: 255,
  externalId: 255,
  /** chat.* `text`: over this Slack answers `msg_too_long` rather than `invalid_blocks`. */
  messageText: 40000,
} as const;

const BLOCK_TYPES = new Set([
  "section",
  "divider",
  "image",
  "actions",
  "context",
  "input",
  "header",
  "rich_text",
  "file",
  "video",
  "markdown",
]);

const SELECTS_WITH_OPTIONS = new Set(["static_select", "multi_static_select"]);
const CHOICE_ELEMENTS = new Set(["checkboxes", "radio_buttons"]);

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Collects problems for one surface; block_id and action_id must be unique across it. */
class Checker {
  readonly problems: string[] = [];
  private readonly blockIds = new Set<string>();
  private readonly actionIds = new Set<string>();

  add(pointer: string, message: string): void {
    this.problems.push(`${message} [json-pointer:${pointer}]`);
  }

  maxLength(pointer: string, value: unknown, max: number, what: string): void {
    if (typeof value !== "string") {
      this.add(pointer, `must be a string (${what})`);
      return;
    }
    if (value.length > max) {
      this.add(pointer, `must be less than ${max + 1} characters (${what} is ${value.length})`);
    }
  }

  /** A text object: `{type: "plain_text" | "mrkdwn", text}` with 1..max characters. */
  text(pointer: string, value: unknown, max: number, what: string, plainOnly = false): void {
    if (!isObj(value)) {
      this.add(pointer, `must be a text object (${what})`);
      return;
    }
    if (plainOnly && value.type !== "plain_text") {
      this.add(`${pointer}/type`, `must be plain_text (${what} cannot be mrkdwn)`);
    } else if (value.type !== "plain_text" && value.type !== "mrkdwn") {
      this.add(`${pointer}/type`, `must be plain_text or mrkdwn (${what})`);
    }
    if (typeof value.text !== "string") {
      this.add(`${pointer}/text`, `must be a string (${what})`);
      return;
    }
    if (value.text.length === 0) this.add(`${pointer}/text`, `must be more than 0 characters (${what})`);
    this.maxLength(`${pointer}/text`, value.text, max, what);
  }

  optionalText(pointer: string, value: unknown, max: number, what: string, plainOnly = false): void {
    if (value !== undefined) this.text(pointer, value, max, what, plainOnly);
  }

  id(pointer: string, value: unknown, kind: "block_id" | "action_id"): void {
    if (value === undefined) return;
    this.maxLength(pointer, value, BLOCK_KIT_LIMITS.id, kind);
    if (typeof value !== "string") return;
    const seen = kind === "block_id" ? this.blockIds : this.actionIds;
    if (seen.has(value)) this.add(pointer, `duplicate ${kind} "${value}": each ${kind} must be unique`);
    seen.add(value);
  }

  count(pointer: string, value: unknown, min: number, max: number, what: string): value is unknown[] {
    if (!Array.isArray(value)) {
      this.add(pointer, `must be an array (${what})`);
      return false;
    }
    if (value.length < min) this.add(pointer, `must provide at least ${min} items (${what})`);
    if (value.length > max) {
      this.add(pointer, `no more than ${max} items allowed (${what} has ${value.length})`);
    }
    return true;
  }

  blocks(pointer: string, blocks: unknown, surface: Surface): void {
    const max = BLOCK_KIT_LIMITS.blocks[surface];
    if (!this.count(pointer, blocks, 0, max, `blocks in a ${surface}`)) return;
    for (const [i, block] of blocks.entries()) this.block(`${pointer}/${i}`, block);
  }

  private block(p: string, block: unknown): void {
    if (!isObj(block)) {
      this.add(p, "must be a block object");
      return;
    }
    if (typeof block.type !== "string" || !BLOCK_TYPES.has(block.type)) {
      this.add(`${p}/type`, `unknown block type ${JSON.stringify(block.type)}`);
      return;
    }
    this.id(`${p}/block_id`, block.block_id, "block_id");
    const L = BLOCK_KIT_LIMITS;
    switch (block.type) {
      case "section":
        if (block.text === undefined && block.fields === undefined) {
          this.add(p, "must provide text or fields (section)");
        }
        this.optionalText(`${p}/text`, block.text, L.sectionText, "section text");
        if (
          block.fields !== undefined &&
          this.count(`${p}/fields`, block.fields, 1, L.sectionFields, "fields")
        ) {
          for (const [i, f] of block.fields.entries())
            this.text(`${p}/fields/${i}`, f, L.sectionField, "section field");
        }
        if (block.accessory !== undefined) this.element(`${p}/accessory`, block.accessory);
        break;
      case "header":
        this.text(`${p}/text`, block.text, L.headerText, "header text", true);
        break;
      case "actions":
        if (this.count(`${p}/elements`, block.elements, 1, L.actionsElements, "elements in actions")) {
          for (const [i, e] of block.elements.entries()) this.element(`${p}/elements/${i}`, e);
        }
        break;
      case "context":
        if (this.count(`${p}/elements`, block.elements, 1, L.contextElements, "elements in context")) {
          for (const [i, e] of block.elements.entries()) {
            if (isObj(e) && e.type === "image") this.image(`${p}/elements/${i}`, e);
            else this.text(`${p}/elements/${i}`, e, L.sectionText, "context text");
          }
        }
        break;
      case "input":
        this.text(`${p}/label`, block.label, L.inputLabel, "input label", true);
        this.optionalText(`${p}/hint`, block.hint, L.inputHint, "input hint", true);
        if (block.element === undefined) this.add(`${p}/element`, "is required (input)");
        else this.element(`${p}/element`, block.element);
        break;
      case "image":
        this.image(p, block);
        this.optionalText(`${p}/title`, block.title, L.imageAltText, "image title", true);
        break;
      case "markdown":
        this.maxLength(`${p}/text`, block.text, L.markdownText, "markdown text");
        break;
      default:
        break;
    }
  }

  private image(p: string, image: Obj): void {
    if (image.image_url !== undefined)
      this.maxLength(`${p}/image_url`, image.image_url, BLOCK_KIT_LIMITS.url, "image url");
    else if (image.slack_file === undefined) this.add(p, "must provide image_url or slack_file (image)");
    this.maxLength(`${p}/alt_text`, image.alt_text, BLOCK_KIT_LIMITS.imageAltText, "image alt_text");
  }

  private element(p: string, el: unknown): void {
    const L = BLOCK_KIT_LIMITS;
    if (!isObj(el) || typeof el.type !== "string") {
      this.add(p, "must be an element object with a type");
      return;
    }
    this.id(`${p}/action_id`, el.action_id, "action_id");
    if (el.type === "image") {
      this.image(p, el);
      return;
    }
    this.optionalText(`${p}/placeholder`, el.placeholder, L.placeholder, "placeholder", true);
    if (el.confirm !== undefined) this.confirm(`${p}/confirm`, el.confirm);
    if (el.type === "button") {
      this.text(`${p}/text`, el.text, L.buttonText, "button text", true);
      if (el.value !== undefined) this.maxLength(`${p}/value`, el.value, L.buttonValue, "button value");
      if (el.url !== undefined) this.maxLength(`${p}/url`, el.url, L.url, "button url");
      if (el.style !== undefined && el.style !== "primary" && el.style !== "danger") {
        this.add(`${p}/style`, `must be primary or danger (button style is ${JSON.stringify(el.style)})`);
      }
    } else if (SELECTS_WITH_OPTIONS.has(el.type)) {
      if (el.options !== undefined) this.options(`${p}/options`, el.options, 1, L.options, true);
      else if (el.option_groups === undefined)
        this.add(p, `must provide options or option_groups (${el.type})`);
    } else if (CHOICE_ELEMENTS.has(el.type)) {
      this.options(`${p}/options`, el.options, 1, L.choiceOptions, false);
    } else if (el.type === "overflow") {
      this.options(`${p}/options`, el.options, 1, L.overflowOptions, true);
    } else if (el.type === "plain_text_input") {
      if (el.initial_value !== undefined) {
        this.maxLength(`${p}/initial_value`, el.initial_value, L.textInputLength, "initial_value");
      }
      if (typeof el.max_length === "number" && el.max_length > L.textInputLength) {
        this.add(`${p}/max_length`, `must be at most ${L.textInputLength} (max_length is ${el.max_length})`);
      }
    }
  }

  private options(p: string, options: unknown, min: number, max: number, plainOnly: boolean): void {
    if (!this.count(p, options, min, max, "options")) return;
    for (const [i, o] of options.entries()) {
      if (!isObj(o)) {
        this.add(`${p}/${i}`, "must be an option object");
        continue;
      }
      this.text(`${p}/${i}/text`, o.text, BLOCK_KIT_LIMITS.optionText, "option text", plainOnly);
      this.maxLength(`${p}/${i}/value`, o.value, BLOCK_KIT_LIMITS.optionValue, "option value");
    }
  }

  private confirm(p: string, c: unknown): void {
    const L = BLOCK_KIT_LIMITS;
    if (!isObj(c)) {
      this.add(p, "must be a confirmation dialog object");
      return;
    }
    this.text(`${p}/title`, c.title, L.confirmTitle, "confirm title", true);
    this.text(`${p}/text`, c.text, L.confirmText, "confirm text");
    this.text(`${p}/confirm`, c.confirm, L.confirmButton, "confirm button", true);
    this.text(`${p}/deny`, c.deny, L.confirmButton, "deny button", true);
  }
}

/**
 * What Slack would refuse in `blocks` sent to a surface, one line each; empty when valid.
 * Pointers start at `/blocks`, as in Slack's answers to chat.* methods.
 */
export function blockKitProblems(blocks: unknown, surface: Surface): string[] {
  const c = new Checker();
  c.blocks("/blocks", blocks, surface);
  return c.problems;
}

/**
 * What Slack would refuse in a view sent to views.open/update/push (`modal`) or
 * views.publish (`home`): the view's own fields and its blocks. Pointers start at `/view`.
 */
export function viewProblems(view: unknown, surface: "modal" | "home"): string[] {
  const c = new Checker();
  const L = BLOCK_KIT_LIMITS;
  if (!isObj(view)) {
    c.add("/view", "must be a view object");
    return c.problems;
  }
  if (view.type !== surface) {
    c.add("/view/type", `must be ${surface} (view type is ${JSON.stringify(view.type)})`);
  }
  if (surface === "modal") {
    c.text("/view/title", view.title, L.viewTitle, "modal title", true);
    c.optionalText("/view/submit", view.submit, L.viewButton, "modal submit", true);
    c.optionalText("/view/close", view.close, L.viewButton, "modal close", true);
    const hasInput = Array.isArray(view.blocks) && view.blocks.some((b) => isObj(b) && b.type === "input");
    if (hasInput && view.submit === undefined) {
      c.add("/view/submit", "is required when the view has an input block (modal submit)");
    }
  }
  if (view.private_metadata !== undefined) {
    c.maxLength("/view/private_metadata", view.private_metadata, L.privateMetadata, "private_metadata");
  }
  if (view.callback_id !== undefined)
    c.maxLength("/view/callback_id", view.callback_id, L.callbackId, "callback_id");
  if (view.external_id !== undefined)
    c.maxLength("/view/external_id", view.external_id, L.externalId, "external_id");
  c.blocks("/view/blocks", view.blocks, surface);
  return c.problems;
}
