/// <reference lib="dom" />
/**
 * Building the page: `h()` makes an element from a tag, attributes and children, and every
 * string child becomes a text node. Nothing in the dashboard parses HTML (no innerHTML, no
 * insertAdjacentHTML, no document.write; tests/dashboard_assets_test.ts keeps it so), so a
 * device ID, property value, key label or audit reason is always shown as the text it is.
 */

/** A child of `h()`: nodes as they are, strings as text, null/undefined/false as nothing. */
export type Child = Node | string | null | undefined | false;

/** Attributes of `h()`: strings and booleans set attributes; functions listen to an event. */
export type Attrs = Record<
  string,
  string | number | boolean | null | undefined | ((e: Event) => void)
>;

/** An element with attributes and children; `on…` attributes given functions are listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (/^on/i.test(name) || name === "style") {
      throw new TypeError(`h(): attribute ${name} takes a function or nothing`); // CSP refuses them
    } else if (value === true) {
      el.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      el.setAttribute(name, String(value)); // `value` too: it is also the input's defaultValue
    }
  }
  append(el, ...children);
  return el;
}

/** Appends children (strings as text nodes). */
export function append(parent: Node, ...children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Node, ...children: (Child | Child[])[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

/** A message line: an error sentence or a notice, shown as text, with a role for screen readers. */
export function message(text: string, kind: "error" | "notice" = "error"): HTMLElement {
  return h("p", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** Copies text to the clipboard; falls back to selecting it where the Clipboard API is absent. */
export async function copyText(text: string, fallback: HTMLElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context (plain http to a remote relay): select it for Ctrl-C instead.
    const range = document.createRange();
    range.selectNodeContents(fallback);
    const selection = globalThis.getSelection();
    selection?.removeAllRanges();
    selection?.addRange(range);
    return false;
  }
}
