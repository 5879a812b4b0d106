//! Tests of the LivePerson engine. Network tests run against the simulator
//! (`switchboard-lp-sim`), which follows `docs/protocol/liveperson.md`.

mod answers;
mod engine;
mod faults;
mod parsing;
mod signatures;
mod translation;
mod units;
