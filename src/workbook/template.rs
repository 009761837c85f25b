//! The blank return template for a period (SPEC §3). (to be written)
