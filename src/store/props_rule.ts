/**
 * The one place that decides what a property change stores, for both backends: last write per
 * key wins (src/protocol/props.ts `mergeChanges`), a removal of a present key is stored as a
 * tombstone so an older change cannot revive it, a removal of an absent key stores nothing, at
 * most `limit` keys are present and at most MAX_TOMBSTONES removals are kept per device (the
 * oldest are deleted). Both backends write exactly what `planApply` decides.
 */
import { MAX_PROPS, mergeChanges, type PropChange, type PropValue } from "../protocol/props.ts";

/** What applying changes decided: what took effect, what was refused, and the rows to write. */
export interface PropPlan {
  applied: PropChange[];
  rejected: PropChange[];
  /** Rows to upsert as (key, value or null for a tombstone, time). */
  writes: PropChange[];
  /** Keys whose rows (old tombstones) are deleted. */
  deletes: string[];
}

/** Applies what fits (a device's queue): last write per key, the limit per change. */
export function planApply(
  current: Map<string, PropValue>,
  changes: PropChange[],
  limit = MAX_PROPS,
): PropPlan {
  const merged = new Map(current);
  const { applied, rejected, dropped } = mergeChanges(merged, changes, limit);
  const writes: PropChange[] = [];
  for (const k of new Set(applied.map((c) => c.k))) {
    const p = merged.get(k); // absent if it was a removal whose tombstone was dropped at once
    if (p) writes.push({ k, v: p.v, at: p.at });
  }
  return { applied, rejected, writes, deletes: dropped.filter((k) => current.has(k)) };
}

/**
 * All or nothing (a client's request): the sentence saying why nothing was stored, or the plan
 * of planApply.
 */
export function planApplyAll(
  current: Map<string, PropValue>,
  changes: PropChange[],
  limit = MAX_PROPS,
): PropPlan & { refusal: string | null } {
  const plan = planApply(current, changes, limit);
  if (plan.rejected.length === 0) return { ...plan, refusal: null };
  const present = [...current.values()].filter((p) => p.v !== null).length;
  return {
    applied: [],
    rejected: plan.rejected,
    writes: [],
    deletes: [],
    refusal: `the device has ${present} properties and the limit is ${limit}; nothing was changed`,
  };
}
