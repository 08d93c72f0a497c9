import { describe, expect, it } from "vitest";

import { TokenBucket } from "../src/pacing.js";

describe("TokenBucket", () => {
  it("gives the burst at once, then one token per 1/rate second", () => {
    const bucket = new TokenBucket(50, 2, 0);
    expect([bucket.take(0), bucket.take(0)]).toEqual([0, 0]);
    expect(bucket.take(0)).toBe(20);
    expect(bucket.take(10)).toBe(10);
    expect(bucket.take(20)).toBe(0);
  });

  it("saves no more than the burst", () => {
    const bucket = new TokenBucket(10, 2, 0);
    bucket.take(0);
    bucket.take(0);
    expect([bucket.take(60_000), bucket.take(60_000), bucket.take(60_000)]).toEqual([0, 0, 100]);
  });
});
