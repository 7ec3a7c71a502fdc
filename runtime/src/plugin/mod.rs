//! A plugin package: its files ([`files`]), manifest ([`manifest`]),
//! signature and trust policy ([`trust`]), and the smoke batch a candidate
//! runs before it may go live ([`smoke`]).

pub mod files;
pub mod manifest;
pub mod smoke;
pub mod trust;
