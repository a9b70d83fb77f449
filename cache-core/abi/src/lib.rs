//! Layouts shared between kcache's user space and its XDP program.
#![no_std]
