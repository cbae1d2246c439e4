//! The registry of departments and categories that may become metric labels
//! (`config/registry.toml`, built in; `labels.registry` points at another). Codes outside it
//! are counted under `unknown`, so a typo or a phone number typed into a code field can never
//! create a new time series. Snapshots are not affected: they keep every code exactly.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::domain::overflow::UNREGISTERED;

pub(crate) const UNKNOWN: &str = "unknown";
/// What the report calls the row of the codes past `labels.unregistered_rows`.
const UNREGISTERED_NAME: &str = "未登记编码（合计）";
const BUILT_IN: &str = include_str!("../config/registry.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRegistry {
    /// Department code -> name as the report prints it.
    pub departments: BTreeMap<String, String>,
    pub categories: BTreeMap<String, Category>,
    /// How the monthly report names the office, its line and the categories under 其它.
    #[serde(default)]
    pub report: ReportNames,
    /// Department codes in the file's order: the report's order among equals.
    #[serde(skip)]
    pub department_order: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportNames {
    /// The office that publishes the report.
    pub office: String,
    /// The line's name, as in "4月份12345市长公开电话办理情况".
    pub line: String,
    /// What the report calls the categories summed under the group 其它, before "问题".
    pub other: String,
}

impl Default for ReportNames {
    fn default() -> ReportNames {
        ReportNames { office: "12345热线办公室".into(), line: "12345热线".into(), other: "其它".into() }
    }
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
        let mut registry: LabelRegistry = toml::from_str(text)?;
        if registry.departments.contains_key(UNREGISTERED) || registry.categories.contains_key(UNREGISTERED) {
            bail!(
                "the registry must not list the code {UNREGISTERED:?}: it names the row of the codes it does not list"
            );
        }
        let table: toml::Table = toml::from_str(text)?;
        if let Some(toml::Value::Table(departments)) = table.get("departments") {
            registry.department_order = departments.keys().cloned().collect();
        }
        Ok(registry)
    }

    /// Where the registry lists a department; those it does not list come after.
    pub(crate) fn department_rank(&self, code: &str) -> usize {
        self.department_order.iter().position(|c| c == code).unwrap_or(usize::MAX)
    }

    pub(crate) fn load(path: &Path) -> Result<LabelRegistry> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        LabelRegistry::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The department's name as the report prints it: the registry's, or its code.
    pub(crate) fn department_name(&self, code: &str) -> String {
        match self.departments.get(code) {
            Some(name) => name.clone(),
            None if code == UNREGISTERED => UNREGISTERED_NAME.to_owned(),
            None => code.to_owned(),
        }
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
    fn the_overflow_rows_code_is_not_a_registry_code() {
        let text = "[departments]\nunregistered = \"x\"\n[categories]\n";
        let error = LabelRegistry::parse(text).unwrap_err().to_string();
        assert!(error.contains("must not list the code \"unregistered\""), "{error}");
    }

    #[test]
    fn departments_keep_the_files_order() {
        let r = LabelRegistry::default();
        assert_eq!(r.department_order.len(), r.departments.len());
        assert!(r.department_rank("tiexi_district") < r.department_rank("tiedong_district"));
        assert_eq!(r.department_rank("not_listed"), usize::MAX);
    }

    #[test]
    fn the_built_in_registry_covers_the_generated_month() {
        let r = LabelRegistry::default();
        for (code, _, _) in crate::generator::DEPARTMENTS {
            assert_eq!(r.department(code), *code);
        }
    }
}
