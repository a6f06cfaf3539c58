//! RFC 3263 server location for outbound SIP: turns a trunk host such as
//! `yourtrunk.pstn.twilio.com` into an ordered list of (address, transport) targets via
//! NAPTR -> SRV -> A/AAAA, and a [`TargetList`] that fails over past targets that recently died.
//!
//! DNS answers are hostile input: record counts are capped, SRV targets of "." are dropped and
//! every lookup is bounded by the configured timeout.

mod error;
mod naptr;
mod resolver;
mod srv;
mod target;
mod target_list;

pub use error::ResolveError;
pub use naptr::{select_naptr, NaptrRule};
pub use resolver::{Resolver, ResolverConfig};
pub use srv::{order_srv, SrvRecord};
pub use target::{Target, Transport};
pub use target_list::{DeadTargets, TargetList, DEFAULT_DEAD_FOR};
