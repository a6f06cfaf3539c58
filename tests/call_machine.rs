//! Call control without sockets: the sans-IO `Endpoint` driven on a fake clock by scripted carriers, agents
//! and trunks (`call_machine/harness.rs`). The inbound and outbound scenarios of `tests/inbound_calls.rs` and
//! `tests/outbound_calls.rs` keep their assertions here and add exact timer checks; `property` drives random
//! event orders over many seeds and checks that every call, agent count, transaction and leg ends; `voicemail`
//! drives the edge's voicemail answer and the media engine's events through a fake media plane
//! (`call_machine/fake_media.rs`).

#[path = "call_machine/details.rs"]
mod details;
#[path = "call_machine/fake_media.rs"]
mod fake_media;
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
#[path = "call_machine/transfer.rs"]
mod transfer;
#[path = "call_machine/voicemail.rs"]
mod voicemail;
