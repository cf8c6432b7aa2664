/**
 * The one place that decides what a property change stores, for both async backends (the
 * synchronous store in src/store/props.ts follows the same rule): last write per key wins
 * (src/protocol/props.ts `mergeChanges`), a removal is stored as a tombstone so an older change
 * cannot revive the key, and at most `limit` keys are present per device. Today every applied
 * change is written, including the tombstone of a key that was never present; if that rule
 * changes (e.g. absent keys store nothing, or tombstones per device are bounded), change
 * `planApply` here and both backends follow.
 */
import { MAX_PROPS, mergeChanges, type PropChange, type PropValue } from "../protocol/props.ts";

/** What applying changes decided: what took effect, what was refused, and the rows to write. */
export interface PropPlan {
  applied: PropChange[];
  rejected: PropChange[];
  /** Rows to upsert as (key, value or null for a tombstone, time). */
  writes: PropChange[];
}

/** Applies what fits (a device's queue): last write per key, the limit per change. */
export function planApply(
  current: Map<string, PropValue>,
  changes: PropChange[],
  limit = MAX_PROPS,
): PropPlan {
  const { applied, rejected } = mergeChanges(new Map(current), changes, limit);
  return { applied, rejected, writes: applied };
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
    refusal: `the device has ${present} properties and the limit is ${limit}; nothing was changed`,
  };
}
