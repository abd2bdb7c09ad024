//! eventwire client SDK (work in progress).
