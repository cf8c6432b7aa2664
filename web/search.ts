/**
 * The devices page's search box: the CLI's filter grammar (`site=zurich on:version!=0.2.0
 * group`), words separated by spaces, a value with spaces in double quotes (`site="new york"`).
 * Malformed input gets the CLI's own sentence.
 */
import { type Filter, parseFilters } from "../src/protocol/filter.ts";

/** Most filters in one search, as the relay allows per listing. */
export const MAX_FILTERS = 32;

/** The filter arguments typed, as `od list` would receive them from a shell. */
export function tokenize(text: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  let inToken = false;
  for (const ch of text) {
    if (ch === '"') {
      quoted = !quoted;
      inToken = true;
    } else if (!quoted && /\s/.test(ch)) {
      if (inToken) out.push(current);
      current = "";
      inToken = false;
    } else {
      current += ch;
      inToken = true;
    }
  }
  if (quoted) throw new RangeError("the search has a quote that is not closed");
  if (inToken) out.push(current);
  return out;
}

/** A parsed search: the arguments for the API and the filters to match live updates against. */
export interface Search {
  args: string[];
  filters: Filter[];
}

/** Parses the search box; throws RangeError with a sentence for malformed input. */
export function parseSearch(text: string): Search {
  const args = tokenize(text);
  if (args.length > MAX_FILTERS) throw new RangeError(`at most ${MAX_FILTERS} filters`);
  return { args, filters: parseFilters(args) };
}
