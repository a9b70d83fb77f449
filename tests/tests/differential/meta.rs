//! The meta half of the request stream (`mg ms md ma`); see `draw.rs` for what is left out.

use base64::Engine as _;
use rand::{seq::SliceRandom, Rng};

use super::{with_data, Draw};

impl Draw {
    pub(super) fn meta_get(&mut self) -> Vec<u8> {
        let mut flags = self.pick(&["v", "v", "f", "c", "k", "s", "q"]);
        if self.rng.gen_ratio(1, 4) {
            flags.push(self.opaque());
        }
        if self.rng.gen_ratio(1, 8) {
            flags.push(format!("T{}", self.ttl()));
        }
        let key = if self.rng.gen_ratio(1, 10) {
            flags.push("N100000".into());
            self.blank_key()
        } else {
            self.key()
        };
        self.meta("mg", &key, &mut flags, None)
    }

    pub(super) fn meta_set(&mut self) -> Vec<u8> {
        let mut flags = self.pick(&["q", "k", "c", "I"]);
        if self.rng.gen_ratio(1, 3) {
            flags.push(format!("F{}", self.flags()));
        }
        if self.rng.gen_ratio(1, 3) {
            flags.push(format!("T{}", self.ttl()));
        }
        if self.rng.gen_ratio(1, 4) {
            flags.push(format!("C{}", self.cas_value()));
        }
        if self.rng.gen_ratio(1, 2) {
            let mode = [
                "MS", "ME", "MA", "MP", "MR", "MS", "ME", "MA", "MP", "MR", "MX",
            ]
            .choose(&mut self.rng);
            flags.push(mode.unwrap_or(&"MS").to_string());
        }
        if self.rng.gen_ratio(1, 4) {
            flags.push(self.opaque());
        }
        let value = self.value();
        let key = self.key_for(&value);
        self.meta("ms", &key, &mut flags, Some(&value))
    }

    pub(super) fn meta_delete(&mut self) -> Vec<u8> {
        let mut flags = self.pick(&["q", "k", "I"]);
        if self.rng.gen_ratio(1, 4) {
            flags.push(format!("C{}", self.cas_value()));
        }
        if self.rng.gen_ratio(1, 4) {
            flags.push(format!("T{}", self.ttl()));
        }
        if self.rng.gen_ratio(1, 4) {
            flags.push(self.opaque());
        }
        let key = self.key();
        self.meta("md", &key, &mut flags, None)
    }

    pub(super) fn meta_arithmetic(&mut self) -> Vec<u8> {
        let mut flags = self.pick(&["v", "c", "k", "q"]);
        if self.rng.gen_ratio(1, 3) {
            flags.push("N100000".into());
        }
        if self.rng.gen_ratio(1, 3) {
            flags.push(format!("J{}", self.rng.gen_range(0..1000u64)));
        }
        if self.rng.gen_ratio(1, 2) {
            let delta = if self.rng.gen_ratio(1, 10) {
                u64::from(self.rng.gen::<u32>())
            } else {
                self.rng.gen_range(0..50)
            };
            flags.push(format!("D{delta}"));
        }
        if self.rng.gen_ratio(1, 3) {
            let mode = ["MI", "MD", "M+", "M-", "MI", "MD", "M+", "M-", "MZ"].choose(&mut self.rng);
            flags.push(mode.unwrap_or(&"MI").to_string());
        }
        if self.rng.gen_ratio(1, 4) {
            flags.push(self.opaque());
        }
        let key = self.numeric_key();
        self.meta("ma", &key, &mut flags, None)
    }

    /// A meta request: the key (base64 with `b` now and then), `data`'s length for `ms`, the
    /// flags shuffled (replies echo them in request order), then the data block.
    fn meta(
        &mut self,
        cmd: &str,
        key: &str,
        flags: &mut Vec<String>,
        data: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut key = key.to_owned();
        if self.rng.gen_ratio(1, 8) {
            key = base64::engine::general_purpose::STANDARD.encode(&key);
            flags.push("b".into());
        }
        flags.shuffle(&mut self.rng);
        let mut line = format!("{cmd} {key}");
        if let Some(data) = data {
            line.push_str(&format!(" {}", data.len()));
        }
        for flag in flags.iter() {
            line.push(' ');
            line.push_str(flag);
        }
        line.push_str("\r\n");
        let mut out = line.into_bytes();
        if let Some(data) = data {
            with_data(&mut out, data);
        }
        out
    }
}
