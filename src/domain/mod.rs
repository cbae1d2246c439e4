//! The functional core: decoding the input contract and counting cases into monthly figures.
//! Nothing here touches Kafka, the network, the clock or the file system.

pub mod calendar;
pub mod case;
pub mod cases;
pub mod city;
pub mod code;
pub mod event;
pub mod figures;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod gauges;
pub mod ledger;
pub mod month;
pub(crate) mod overflow;
pub mod partition;
pub mod publisher;
pub mod ranking;
pub mod routing;
pub mod snapshot;
