/// <reference lib="dom" />
/** Moving between the dashboard's pages without reloading: main.ts renders what the URL names. */

let render: () => void = () => {};

/** Sets what renders the page for the current URL (main.ts). */
export function setRenderer(fn: () => void): void {
  render = fn;
}

/** Goes to an internal path (replacing the history entry if `replaceState`) and renders it. */
export function navigate(path: string, replaceState = false): void {
  if (replaceState) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}
