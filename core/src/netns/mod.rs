//! Network namespaces: the pieces the dump ([`crate::dump::ns`]) and the restore
//! ([`crate::restore::ns`]) of a tree root's own network namespace share. Everything talks
//! rtnetlink itself (no `ip` is run): [`nlmsg`] codes messages, [`sock`] exchanges them,
//! [`links`] reads and makes devices, [`ipimg`] is CRIU's raw address/route/rule image
//! format, [`conf`] the sysctls CRIU keeps, [`enter`] moves criu's threads between
//! namespaces.

pub mod conf;
pub mod enter;
pub mod ipimg;
pub mod links;
pub mod nlmsg;
pub mod sock;
