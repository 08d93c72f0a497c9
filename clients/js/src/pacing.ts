/**
 * Pacing: the gateway refuses frames above `rate_per_second` (burst `rate_burst`) per connection,
 * both announced in `ready`. A refused frame cannot simply be sent again on the same connection
 * (a later `seq` may have been accepted meanwhile: `seq-repeated`), so the bridge keeps under the
 * limit instead, with the same token bucket as the gateway's. It starts full when `ready` arrives,
 * after the gateway's own started, and each frame reaches the gateway after it was sent: the
 * gateway's bucket always holds at least as many tokens as this one.
 *
 * @module
 */

export class TokenBucket {
  private tokens: number;

  /** `rate` tokens a second, at most `burst` saved; `now` in milliseconds. */
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private updated: number,
  ) {
    this.tokens = burst;
  }

  /** Take one token: 0 if one was taken, else how many milliseconds until one will be there. */
  take(now: number): number {
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.updated) * this.rate) / 1000);
    this.updated = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.rate);
  }
}
