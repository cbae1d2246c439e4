//! The registry of departments and categories that may become metric labels
//! (`config/registry.toml`, built in; `labels.registry` points at another). Codes outside it
//! are counted under `unknown`, so a typo or a phone number typed into a code field can never
//! create a new time series. Snapshots are not affected: they keep every code exactly.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

pub const UNKNOWN: &str = "unknown";
const BUILT_IN: &str = include_str!("../config/registry.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRegistry {
    /// Department code -> name as the report prints it.
    pub departments: BTreeMap<String, String>,
    pub categories: BTreeMap<String, Category>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    /// The line of the report the category is summed into.
    pub group: String,
}

impl Default for LabelRegistry {
    fn default() -> LabelRegistry {
        LabelRegistry::parse(BUILT_IN).expect("the built-in registry parses")
    }
}

impl LabelRegistry {
    pub fn parse(text: &str) -> Result<LabelRegistry> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> Result<LabelRegistry> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        LabelRegistry::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The department's code as a label, or `unknown`.
    pub fn department<'a>(&self, code: &'a str) -> &'a str {
        if self.departments.contains_key(code) { code } else { UNKNOWN }
    }

    /// The category's code as a label, or `unknown`.
    pub fn category<'a>(&self, code: &'a str) -> &'a str {
        if self.categories.contains_key(code) { code } else { UNKNOWN }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_outside_the_registry_become_unknown() {
        let r = LabelRegistry::default();
        assert_eq!(r.department("tiexi_district"), "tiexi_district");
        assert_eq!(r.department("13912345678"), UNKNOWN);
        assert_eq!(r.category("water"), "water");
        assert_eq!(r.categories["water"].group, "其它");
        assert_eq!(r.category("zhang_san"), UNKNOWN);
    }

    #[test]
    fn the_built_in_registry_covers_the_generated_month() {
        let r = LabelRegistry::default();
        for (code, _, _) in crate::generator::DEPARTMENTS {
            assert_eq!(r.department(code), *code);
        }
    }
}
