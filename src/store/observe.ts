/** Tells the relay's metrics how long each committed store transaction took, on either backend. */

let observer: ((seconds: number) => void) | null = null;

/** Sets the function told how long each committed transaction took (the relay's metrics). */
export function setTransactionObserver(fn: ((seconds: number) => void) | null): void {
  observer = fn;
}

/** Reports one committed transaction that started at `started` (performance.now()). */
export function observeCommit(started: number): void {
  observer?.((performance.now() - started) / 1000);
}
