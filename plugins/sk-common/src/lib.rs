//! Code shared by the socket plugins (no plugin of its own): the generic socket options of
//! CRIU's `sk_opts_entry` read from a socket at dump and set again at restore ([`opts`],
//! as CRIU's `dump_socket_opts` / `restore_socket_opts`), and the thin `getsockopt` /
//! `setsockopt` wrappers nix lacks ([`sys`]); the options only unix sockets have, kept in
//! our fields of that entry ([`unix_opts`]); the `sock_diag` netlink exchange ([`diag`]).

#![warn(missing_docs)]

pub mod diag;
pub mod filter;
pub mod opts;
pub mod sys;
pub mod unix_opts;

#[cfg(test)]
mod tests;

pub use opts::{OptError, dump, restore, restore_bound_dev, restore_buffers, restore_rest};
