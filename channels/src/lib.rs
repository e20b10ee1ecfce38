//! Channel configuration and the policy engine.
//!
//! A channel is defined by its configuration: member organizations with their MSPs, the ordering
//! service, policies and capabilities, held as Fabric's `common.Config` tree. This crate builds
//! that tree from a declarative file, writes genesis blocks, computes, authorizes and applies
//! config updates, and evaluates policies — signature policies and implicit-meta policies over
//! the tree — with an explanation of why a policy was or was not satisfied.
//!
//! Everything here is a plain function of its inputs: no I/O beyond reading the files a caller
//! names, no clock (the validation time is an argument).

pub mod config;
pub mod genesis;
pub mod policy;
pub mod update;
