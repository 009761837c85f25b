//! Finding the return in a sheet by its labels (SPEC §3). (to be written)
