import { describe, expect, it } from "vitest";

import {
  type Callback,
  type Redaction,
  cancelCallback,
  completeCallback,
  errorCallback,
  eventCallback,
  inquiryOf,
  parseServerFrame,
} from "../src/frames.js";

const DEFAULT: Redaction = { sendSessionToken: false, sendFieldValues: false };
const EVERYTHING: Redaction = { sendSessionToken: true, sendFieldValues: true };
const INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6";

interface Case {
  name: string;
  map: () => Callback;
  expected: Callback;
}

const cases: Case[] = [
  {
    name: "onEvent keeps name and metadata",
    map: () => eventCallback("document-upload", { side: "front" }, DEFAULT),
    expected: { kind: "onEvent", name: "document-upload", metadata: { side: "front" } },
  },
  {
    name: "onEvent without metadata sends null",
    map: () => eventCallback("load", undefined, DEFAULT),
    expected: { kind: "onEvent", name: "load", metadata: null },
  },
  {
    name: "onEvent keeps unknown names",
    map: () => eventCallback("brand-new-event", { x: 1 }, DEFAULT),
    expected: { kind: "onEvent", name: "brand-new-event", metadata: { x: 1 } },
  },
  {
    name: "onEvent 'complete' metadata loses field values by default",
    map: () =>
      eventCallback(
        "complete",
        { inquiryId: INQ, status: "completed", fields: { "name-first": { type: "string", value: "Jane" } } },
        DEFAULT,
      ),
    expected: {
      kind: "onEvent",
      name: "complete",
      metadata: { inquiryId: INQ, status: "completed", fields: { "name-first": { type: "string" } } },
    },
  },
  {
    name: "onEvent 'exit' metadata loses the session token by default",
    map: () => eventCallback("exit", { inquiryId: INQ, sessionToken: "secret" }, DEFAULT),
    expected: { kind: "onEvent", name: "exit", metadata: { inquiryId: INQ } },
  },
  {
    name: "onEvent 'exit' metadata keeps the session token when asked",
    map: () => eventCallback("exit", { inquiryId: INQ, sessionToken: "secret" }, EVERYTHING),
    expected: { kind: "onEvent", name: "exit", metadata: { inquiryId: INQ, sessionToken: "secret" } },
  },
  {
    name: "onComplete sends field names and types only by default",
    map: () =>
      completeCallback(
        {
          inquiryId: INQ,
          status: "completed",
          fields: { "name-first": { type: "string", value: "Jane" }, birthdate: { type: "date", value: "1990-01-01" } },
        },
        DEFAULT,
      ),
    expected: {
      kind: "onComplete",
      inquiryId: INQ,
      status: "completed",
      fields: { "name-first": { type: "string" }, birthdate: { type: "date" } },
    },
  },
  {
    name: "onComplete legacy string fields become null by default",
    map: () => completeCallback({ inquiryId: INQ, status: "failed", fields: { "name-first": "Jane" } }, DEFAULT),
    expected: { kind: "onComplete", inquiryId: INQ, status: "failed", fields: { "name-first": null } },
  },
  {
    name: "onComplete keeps values when asked",
    map: () =>
      completeCallback(
        { inquiryId: INQ, status: "completed", fields: { "name-first": { type: "string", value: "Jane" } } },
        EVERYTHING,
      ),
    expected: {
      kind: "onComplete",
      inquiryId: INQ,
      status: "completed",
      fields: { "name-first": { type: "string", value: "Jane" } },
    },
  },
  {
    name: "onComplete without fields sends an empty map",
    map: () => completeCallback({ inquiryId: INQ, status: "completed" }, DEFAULT),
    expected: { kind: "onComplete", inquiryId: INQ, status: "completed", fields: {} },
  },
  {
    name: "onCancel strips the session token by default",
    map: () => cancelCallback({ inquiryId: INQ, sessionToken: "secret" }, DEFAULT),
    expected: { kind: "onCancel", inquiryId: INQ },
  },
  {
    name: "onCancel keeps the session token when asked",
    map: () => cancelCallback({ inquiryId: INQ, sessionToken: "secret" }, EVERYTHING),
    expected: { kind: "onCancel", inquiryId: INQ, sessionToken: "secret" },
  },
  {
    name: "onCancel before an inquiry exists",
    map: () => cancelCallback({ inquiryId: undefined, sessionToken: undefined }, EVERYTHING),
    expected: { kind: "onCancel" },
  },
  {
    name: "onError keeps status, code and message",
    map: () => errorCallback({ status: 422, code: "inactive_template", message: "inactive" }),
    expected: { kind: "onError", status: 422, code: "inactive_template", message: "inactive" },
  },
  {
    name: "onError keeps unknown codes",
    map: () => errorCallback({ status: 0, code: "something_new" }),
    expected: { kind: "onError", status: 0, code: "something_new" },
  },
  {
    name: "onError with a malformed argument stays a valid frame",
    map: () => errorCallback(undefined),
    expected: { kind: "onError", status: -1, code: "unknown" },
  },
];

describe("callback mapping", () => {
  it.each(cases)("$name", ({ map, expected }) => {
    expect(map()).toEqual(expected);
  });

  it("never changes the SDK's own argument", () => {
    const argument = { inquiryId: INQ, status: "completed", fields: { a: { type: "string", value: "x" } } };
    completeCallback(argument, DEFAULT);
    expect(argument.fields.a.value).toBe("x");
  });
});

describe("inquiryOf", () => {
  it.each<[string, Callback, string | undefined]>([
    ["start event", { kind: "onEvent", name: "start", metadata: { inquiryId: INQ } }, INQ],
    ["complete event", { kind: "onEvent", name: "complete", metadata: { inquiryId: INQ } }, INQ],
    ["onComplete", { kind: "onComplete", inquiryId: INQ, status: "completed", fields: {} }, INQ],
    ["onCancel", { kind: "onCancel", inquiryId: INQ }, INQ],
    ["onCancel before an inquiry", { kind: "onCancel" }, undefined],
    ["another event", { kind: "onEvent", name: "document-upload", metadata: { inquiryId: INQ } }, undefined],
    ["an invalid id", { kind: "onEvent", name: "start", metadata: { inquiryId: "nope" } }, undefined],
    ["onLoad", { kind: "onLoad" }, undefined],
  ])("%s", (_, callback, expected) => {
    expect(inquiryOf(callback)).toBe(expected);
  });
});

describe("parseServerFrame", () => {
  it.each<[unknown, unknown]>([
    ['{"type":"ack","session":"s","seq":1}', { type: "ack", session: "s", seq: 1 }],
    ["not json", undefined],
    ['["type"]', undefined],
    ['{"no":"type"}', undefined],
    [new ArrayBuffer(2), undefined],
  ])("%s", (data, expected) => {
    expect(parseServerFrame(data)).toEqual(expected);
  });
});
