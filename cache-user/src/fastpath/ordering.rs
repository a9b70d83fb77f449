//! Whether the CPU the kernel runs on orders loads the way the XDP seqlock reader needs.
//!
//! The reader (cache-ebpf `slot.rs`) reads `seq`, the slot's fields and its reply text, then
//! `seq` again, and serves the copy only if `seq` did not change. That proves nothing unless the
//! data loads happen after the first `seq` load and before the second, in the CPU as well as in
//! the program. The program keeps them in order (volatile reads, and the second read made only
//! after the copies returned); the CPU must not reorder them:
//!
//! - **x86 (32 and 64 bit)**: loads are never reordered with other loads (TSO), and the BPF JIT
//!   keeps the program's order, so the re-check is sound as built.
//! - **anything else** (aarch64, riscv64, ppc64, loongarch64, ...): loads may be reordered with
//!   each other, so the copy could read newer text than the first `seq` read allowed, or older
//!   text than the second. Making the reader portable needs hardware ordering: every slot read
//!   an acquire load (BPF's `load_acquire`, kernel 6.15+ and `-mcpu=v4`; the helper copies would
//!   have to become such loads too, since a helper call orders nothing on these CPUs), or a
//!   fully ordered atomic read-modify-write as the re-check (a store to the slot's first cache
//!   line on every hit, which every CPU answering the key then fights over). The program does
//!   neither, so `--xdp` is refused there; UDP and TCP are still served by the engine.
//!
//! The test is on the kernel's machine (`uname -m`), not this binary's target: the BPF program
//! is JIT-compiled for the kernel's CPU, which is what an x86-64 binary under emulation on an
//! arm64 kernel would get.

use anyhow::{bail, Context, Result};

/// Refuses to start XDP unless the kernel's CPU keeps loads in order (see the module docs).
pub(crate) fn check_this_machine() -> Result<()> {
    let uts = nix::sys::utsname::uname().context("uname")?;
    let machine = uts.machine().to_string_lossy();
    if let Err(why) = loads_in_order(&machine) {
        bail!("{why}");
    }
    Ok(())
}

/// `Ok` for a `uname -m` machine whose CPUs never reorder a load with another load; otherwise
/// the reason XDP cannot run there.
pub(crate) fn loads_in_order(machine: &str) -> Result<(), String> {
    match machine {
        "x86_64" | "i386" | "i486" | "i586" | "i686" => Ok(()),
        other => Err(format!(
            "--xdp is not supported on {other}: the XDP program's seqlock re-check relies on the \
             CPU never reordering loads with loads (x86's TSO), and on this CPU it would need \
             acquire loads the program does not use (see docs/XDP.md, \"Memory ordering\"); run \
             without --xdp (UDP is then answered by the engine)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tso_machines_run_xdp() {
        // (uname -m, XDP allowed)
        let cases = [
            // x86-64 and 32-bit x86: loads are not reordered with loads.
            ("x86_64", true),
            ("i686", true),
            ("i386", true),
            // Weakly ordered: loads may pass loads.
            ("aarch64", false),
            ("armv7l", false),
            ("riscv64", false),
            ("ppc64le", false),
            ("ppc64", false),
            ("loongarch64", false),
            ("mips64", false),
            // Not x86, so not covered either (and the object is little-endian BPF).
            ("s390x", false),
            // Unknown or empty: refused, never assumed.
            ("", false),
            ("x86_64 ", false),
        ];
        for (machine, allowed) in cases {
            assert_eq!(loads_in_order(machine).is_ok(), allowed, "{machine:?}");
        }
        // The refusal names the machine and the way out.
        let why = loads_in_order("aarch64").err().unwrap_or_default();
        assert!(
            why.contains("aarch64") && why.contains("without --xdp"),
            "{why}"
        );
        // This test runs on x86-64 (the VMs this project is built on), where XDP must start.
        #[cfg(target_arch = "x86_64")]
        assert!(check_this_machine().is_ok());
    }
}
