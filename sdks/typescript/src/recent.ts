// The event ids a consumer processed lately (services/sdk/src/recent.rs): a second record of
// an event (a publish retried after its answer was lost) is handed to the handler once.

/** Event ids remembered per consumer. */
export const RECENT_EVENTS = 10_000;

export class RecentEvents {
  private readonly ids = new Set<string>();
  constructor(private readonly capacity = RECENT_EVENTS) {}

  has(eventId: string): boolean {
    return this.ids.has(eventId);
  }

  remember(eventId: string): void {
    if (this.ids.has(eventId)) return;
    this.ids.add(eventId);
    // A Set iterates in insertion order: the first is the oldest.
    if (this.ids.size > Math.max(1, this.capacity)) {
      const oldest = this.ids.values().next().value as string;
      this.ids.delete(oldest);
    }
  }
}
