//! Call control without sockets: the sans-IO `Endpoint` driven on a fake clock by scripted carriers, agents
//! and trunks (`call_machine/harness.rs`). The inbound and outbound scenarios of `tests/inbound_calls.rs` and
//! `tests/outbound_calls.rs` keep their assertions here and add exact timer checks; `property` drives random
//! event orders over many seeds and checks that every call, agent count, transaction and leg ends.

#[path = "call_machine/details.rs"]
mod details;
#[path = "call_machine/harness.rs"]
mod harness;
#[path = "call_machine/inbound.rs"]
mod inbound;
#[path = "call_machine/outbound.rs"]
mod outbound;
#[path = "call_machine/peers.rs"]
mod peers;
#[path = "call_machine/property.rs"]
mod property;
