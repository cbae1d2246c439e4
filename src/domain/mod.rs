//! The functional core: decoding the input contract and counting cases into monthly figures.
//! Nothing here touches Kafka, the network, the clock or the file system.

pub(crate) mod calendar;
pub mod case;
pub(crate) mod cases;
pub(crate) mod city;
pub(crate) mod code;
pub mod event;
pub mod figures;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod gauges;
pub mod ledger;
pub mod month;
pub(crate) mod overflow;
pub(crate) mod partition;
pub mod province;
pub(crate) mod publisher;
pub(crate) mod publishers;
pub mod ranking;
pub(crate) mod recount;
pub mod routing;
pub mod snapshot;
