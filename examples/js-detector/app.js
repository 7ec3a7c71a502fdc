// The component's exports (world `detector` of wit/detector.wit): a thin
// shell around velocity.js, which holds the logic.
import { counterAdd } from "vigil:detector/host@0.2.0";
import { Velocity } from "./velocity.js";

let detector = null;

const steps = (keys, nowMs, windowMs, deltas) => counterAdd({ keys, nowMs, windowMs, deltas });

export function info() {
  return {
    version: "0.1.0",
    description: "velocity in JavaScript: request and token volume per account, API key and payment instrument",
  };
}

// result<_, string>: componentize-js returns `{ tag: "err", val }` as the
// error (a thrown Error would trap instead).
export function init(config) {
  try {
    detector = new Velocity(config);
  } catch (e) {
    return { tag: "err", val: String(e) };
  }
}

export function score(batch) {
  if (detector === null) return { tag: "err", val: "score called before init" };
  return detector.score(batch, steps);
}
