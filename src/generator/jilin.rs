//! The generated province: Jilin's nine prefecture-level cities (GB/T 2260), the reference
//! city 四平 among them. Each other city is the reference month's shape at its own size, by
//! its population, with its own departments (its districts and counties in the places of
//! 四平's, the municipal bureaus under its own name) and its own rates in the office's loop.

use serde_json::{Value, json};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{LoopRates, Plan, REFERENCE_CASES};
use crate::domain::case::CountingRules;
use crate::domain::month::Month;
use crate::domain::province::ProvinceMonth;
use crate::domain::ranking::RankingRules;
use crate::domain::snapshot::{Snapshot, Status};
use crate::labels::LabelRegistry;

/// A city of the generated province.
#[derive(Debug)]
pub struct GeneratedCity {
    pub code: &'static str,
    pub name: &'static str,
    /// As its bureaus' names carry it (联通四平分公司).
    short: &'static str,
    /// Residents at the 2020 census, in thousands.
    pub population: u32,
    /// Its five largest districts and counties (code, name as its report prints it), in the
    /// places of the reference's.
    districts: [(&'static str, &'static str); 5],
    pub rates: LoopRates,
}

/// The reference city's districts and counties, as the reference's department table has them.
const REFERENCE_DISTRICTS: [&str; 5] =
    ["tiexi_district", "tiedong_district", "lishu_county", "yitong_county", "shuangliao_city"];

/// The reference city.
pub const SIPING: &GeneratedCity = &CITIES[2];

/// By division code.
pub const CITIES: [GeneratedCity; 9] = [
    GeneratedCity {
        code: "220100",
        name: "长春市",
        short: "长春",
        population: 9_067,
        districts: [
            ("chaoyang_district", "朝阳区政府"),
            ("nanguan_district", "南关区政府"),
            ("kuancheng_district", "宽城区政府"),
            ("erdao_district", "二道区政府"),
            ("lvyuan_district", "绿园区政府"),
        ],
        rates: LoopRates { sign_for_on_time: 0.88, reopened: 0.02, results: [78, 14, 5, 3] },
    },
    GeneratedCity {
        code: "220200",
        name: "吉林市",
        short: "吉林",
        population: 3_624,
        districts: [
            ("chuanying_district", "船营区政府"),
            ("changyi_district", "昌邑区政府"),
            ("longtan_district", "龙潭区政府"),
            ("fengman_district", "丰满区政府"),
            ("huadian_city", "桦甸市政府"),
        ],
        rates: LoopRates { sign_for_on_time: 0.82, reopened: 0.03, results: [74, 16, 6, 4] },
    },
    GeneratedCity {
        code: "220300",
        name: "四平市",
        short: "四平",
        population: 1_815,
        districts: [
            ("tiexi_district", "铁西区政府"),
            ("tiedong_district", "铁东区政府"),
            ("lishu_county", "梨树县政府"),
            ("yitong_county", "伊通县政府"),
            ("shuangliao_city", "双辽市政府"),
        ],
        rates: LoopRates::REFERENCE,
    },
    GeneratedCity {
        code: "220400",
        name: "辽源市",
        short: "辽源",
        population: 997,
        districts: [
            ("longshan_district", "龙山区政府"),
            ("xian_district", "西安区政府"),
            ("dongfeng_county", "东丰县政府"),
            ("dongliao_county", "东辽县政府"),
            ("development_zone", "辽源经济开发区管委会"),
        ],
        rates: LoopRates { sign_for_on_time: 0.7, reopened: 0.05, results: [68, 17, 10, 5] },
    },
    GeneratedCity {
        code: "220500",
        name: "通化市",
        short: "通化",
        population: 1_812,
        districts: [
            ("dongchang_district", "东昌区政府"),
            ("erdaojiang_district", "二道江区政府"),
            ("meihekou_city", "梅河口市政府"),
            ("jian_city", "集安市政府"),
            ("tonghua_county", "通化县政府"),
        ],
        rates: LoopRates { sign_for_on_time: 0.85, reopened: 0.025, results: [77, 14, 5, 4] },
    },
    GeneratedCity {
        code: "220600",
        name: "白山市",
        short: "白山",
        population: 951,
        districts: [
            ("hunjiang_district", "浑江区政府"),
            ("jiangyuan_district", "江源区政府"),
            ("linjiang_city", "临江市政府"),
            ("fusong_county", "抚松县政府"),
            ("jingyu_county", "靖宇县政府"),
        ],
        rates: LoopRates { sign_for_on_time: 0.9, reopened: 0.015, results: [82, 12, 3, 3] },
    },
    GeneratedCity {
        code: "220700",
        name: "松原市",
        short: "松原",
        population: 2_253,
        districts: [
            ("ningjiang_district", "宁江区政府"),
            ("qianguo_county", "前郭尔罗斯蒙古族自治县政府"),
            ("changling_county", "长岭县政府"),
            ("qianan_county", "乾安县政府"),
            ("fuyu_city", "扶余市政府"),
        ],
        rates: LoopRates { sign_for_on_time: 0.75, reopened: 0.04, results: [70, 17, 8, 5] },
    },
    GeneratedCity {
        code: "220800",
        name: "白城市",
        short: "白城",
        population: 1_551,
        districts: [
            ("taobei_district", "洮北区政府"),
            ("taonan_city", "洮南市政府"),
            ("daan_city", "大安市政府"),
            ("zhenlai_county", "镇赉县政府"),
            ("tongyu_county", "通榆县政府"),
        ],
        rates: LoopRates { sign_for_on_time: 0.78, reopened: 0.035, results: [72, 16, 8, 4] },
    },
    GeneratedCity {
        code: "222400",
        name: "延边朝鲜族自治州",
        short: "延边",
        population: 1_941,
        districts: [
            ("yanji_city", "延吉市政府"),
            ("dunhua_city", "敦化市政府"),
            ("hunchun_city", "珲春市政府"),
            ("longjing_city", "龙井市政府"),
            ("tumen_city", "图们市政府"),
        ],
        rates: LoopRates { sign_for_on_time: 0.86, reopened: 0.02, results: [79, 13, 5, 3] },
    },
];

impl GeneratedCity {
    /// Its cases at `rate` times the reference city's per resident: the reference city's
    /// month at `rate` 1.
    pub fn cases(&self, rate: f64) -> usize {
        (REFERENCE_CASES as f64 * rate * f64::from(self.population) / f64::from(SIPING.population)).round() as usize
    }

    /// Its registry: the reference's, with its districts and counties and its name.
    pub fn registry(&self) -> LabelRegistry {
        let mut registry = LabelRegistry::default();
        let renamed = |name: &str| name.replace(SIPING.short, self.short);
        let mut departments = std::collections::BTreeMap::new();
        let mut order = Vec::new();
        for code in &registry.department_order {
            let (code, name) = match REFERENCE_DISTRICTS.iter().position(|d| d == code) {
                Some(i) => (self.districts[i].0.to_owned(), self.districts[i].1.to_owned()),
                None => (code.clone(), renamed(&registry.departments[code])),
            };
            order.push(code.clone());
            departments.insert(code, name);
        }
        registry.departments = departments;
        registry.department_order = order;
        registry.report.office = self.office();
        registry.report.line = renamed(&registry.report.line);
        registry
    }

    /// The office in its report's header.
    pub fn office(&self) -> String {
        format!("{}政务服务和数字化建设管理局", self.name)
    }

    /// Makes a generated event of the reference city this city's: it names the city, and its
    /// departments are this city's.
    pub(super) fn claim(&self, event: &mut Value) {
        for field in ["department", "to_department", "from_department"] {
            let Some(code) = event.get(field).and_then(Value::as_str) else { continue };
            if let Some(i) = REFERENCE_DISTRICTS.iter().position(|d| *d == code) {
                event[field] = json!(self.districts[i].0);
            }
        }
        event["city"] = json!(self.code);
    }
}

/// The province's month: the reference city's as the reference month (seed 2022), each other
/// city at `rate` times its cases per resident (its own seed), by division code.
pub fn plans(month: Month, zone: &TimeZone, rate: f64) -> Vec<Plan> {
    CITIES
        .iter()
        .enumerate()
        .map(|(i, city)| {
            let reference = city.code == SIPING.code;
            Plan {
                month,
                zone: zone.clone(),
                cases: if reference { REFERENCE_CASES } else { city.cases(rate) },
                next_month_days: 3,
                seed: 2022 + i as u64,
                v2_events: true,
                city: (!reference).then_some(city),
            }
        })
        .collect()
}

/// The province's month of `plans` counted by the core, each city by the reference's rules, as
/// its closed snapshot as of `as_of`: what the bulletin's tests render.
pub fn province_snapshot(plans: &[Plan], as_of: Timestamp) -> Snapshot {
    assert_eq!(plans.len(), CITIES.len(), "a plan per city, by division code (`plans`)");
    let month = plans[0].month;
    let ledgers: Vec<_> = plans.iter().map(|plan| super::count(plan, CountingRules::reference())).collect();
    // As the publisher gives them: every city, one without cases with an empty tally.
    let empty = crate::domain::figures::Tally::default();
    let cities = CITIES
        .iter()
        .zip(&ledgers)
        .map(|(city, ledger)| {
            let code = city.code.parse().expect("the generated cities' codes are valid");
            (code, city.name, ledger.tally(month).unwrap_or(&empty))
        })
        .collect();
    Snapshot {
        city: None,
        month,
        timezone: "Asia/Shanghai".into(),
        revision: 12,
        status: Status::Closed,
        as_of,
        published_at: as_of,
        figures: ProvinceMonth { cities }.figures(as_of, &RankingRules::default()),
        made_by: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_city_is_the_reference_month_and_the_others_scale_by_population() {
        assert_eq!(SIPING.cases(1.0), REFERENCE_CASES);
        assert_eq!(CITIES[0].cases(1.0), 158_265, "长春: 9,067 thousand residents to 四平's 1,815");
        assert_eq!(CITIES[0].cases(0.25), 39_566);
        assert!(CITIES.windows(2).all(|w| w[0].code < w[1].code), "by division code");
    }

    #[test]
    fn a_citys_registry_has_its_own_districts_and_name() {
        let changchun = CITIES[0].registry();
        assert_eq!(changchun.departments["nanguan_district"], "南关区政府");
        assert!(!changchun.departments.contains_key("tiexi_district"));
        assert_eq!(changchun.departments["china_mobile"], "移动长春分公司");
        assert_eq!(changchun.department_order[1], "nanguan_district");
        assert_eq!(changchun.report.office, "长春市政务服务和数字化建设管理局");
        let siping = SIPING.registry();
        let reference = LabelRegistry::default();
        assert_eq!(siping.departments, reference.departments);
        assert_eq!(siping.department_order, reference.department_order);
    }
}
