//! Who sends traffic: benign personas and campaign members, with the
//! infrastructure they share (office IPs, corporate cards, reseller proxies,
//! cloud ranges). Identifiers are random hex, so nothing in the request
//! stream hints at a label.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::scenario::{DAY_MS, Scenario, Style};
use crate::text::{self, R, Split};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Persona {
    Casual,
    Student,
    Developer,
    CompanyStaff,
    CloudUser,
    ResellerCustomer,
    Labelling,
}

#[derive(Debug, Clone)]
pub enum Role {
    Benign(Persona),
    /// Index into `Scenario::campaigns`.
    Campaign(usize),
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub role: Role,
    pub created_ms: i64,
    /// First and last time it may send.
    pub active_from: i64,
    pub active_to: i64,
    pub org: Option<String>,
    pub api_key: String,
    pub ips: Vec<(String, u32)>,
    pub user_agent: &'static str,
    pub card: String,
    /// Mean requests per day (benign) or per-account interval (campaign).
    pub rate_per_day: f64,
    /// Local-time offset for the diurnal rhythm, hours.
    pub tz_hours: i64,
}

pub struct Population {
    pub accounts: Vec<Account>,
}

fn hex(rng: &mut R) -> String {
    format!("{:012x}", rng.r#gen::<u64>() & 0xffff_ffff_ffff)
}

fn ip4(a: u8, b: u8, c: u8, d: u8) -> String {
    format!("{a}.{b}.{c}.{d}")
}

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
];
const SDKS: &[&str] = &["openai-python/1.54.0", "anthropic-typescript/0.32.1", "python-httpx/0.27.0", "curl/8.5.0"];
/// Popular cloud ASNs (and a residential proxy provider's).
const CLOUD_ASNS: &[u32] = &[16509, 15169, 8075, 14061, 24940];
const RESIDENTIAL_ASNS: &[u32] = &[7922, 3320, 2856, 3215, 12322, 701, 6830, 5089];
const PROXY_ASN: u32 = 9009;

fn residential_ip(rng: &mut R) -> (String, u32) {
    let ip = ip4(rng.gen_range(24..220), rng.r#gen(), rng.r#gen(), rng.gen_range(1..255));
    (ip, *RESIDENTIAL_ASNS.choose(rng).unwrap())
}

fn cloud_ip(rng: &mut R) -> (String, u32) {
    // A few hundred /24s of popular clouds, shared by many tenants.
    let asn_i = rng.gen_range(0..CLOUD_ASNS.len());
    let ip = ip4(3 + asn_i as u8 * 10, rng.gen_range(0..4), rng.gen_range(0..64), rng.gen_range(1..255));
    (ip, CLOUD_ASNS[asn_i])
}

impl Population {
    pub fn build(s: &Scenario, rng: &mut R) -> Self {
        let start = s.start_ms;
        let end = s.end_ms();
        let b = &s.benign;
        let mut accounts = Vec::new();

        // Reseller proxy pool: three /24s, carrying campaigns and real customers.
        let proxies: Vec<(String, u32)> =
            (0..48).map(|i| (ip4(185, 220, 100 + (i % 3) as u8, 10 + i as u8), PROXY_ASN)).collect();

        // Companies: staff share one office IP, one org and one corporate card.
        let mut companies: Vec<(String, (String, u32), String)> = Vec::new();
        let n_company = (b.accounts as f64 * b.company_share) as usize;
        let mut company_left = 0usize;

        for _ in 0..b.accounts {
            let r: f64 = rng.r#gen();
            let mut persona = if r < b.student_share {
                Persona::Student
            } else if r < b.student_share + b.developer_share {
                Persona::Developer
            } else if r < b.student_share + b.developer_share + b.cloud_share {
                Persona::CloudUser
            } else {
                Persona::Casual
            };
            let mut org = None;
            let mut card = format!("pf-{}", hex(rng));
            let mut ip = residential_ip(rng);
            if accounts.len() < n_company {
                if company_left == 0 {
                    // Sizes from a handful to a big office.
                    company_left = *[5usize, 8, 12, 20, 35, 60].choose(rng).unwrap();
                    companies.push((format!("org-{}", hex(rng)), residential_ip(rng), format!("pf-{}", hex(rng))));
                }
                company_left -= 1;
                let c = companies.last().unwrap();
                persona = Persona::CompanyStaff;
                org = Some(c.0.clone());
                ip = c.1.clone();
                card = c.2.clone();
            } else if persona == Persona::CloudUser {
                ip = cloud_ip(rng);
            }
            let new_signup = rng.gen_bool(b.new_signup_share);
            let created = if new_signup {
                start + rng.gen_range(0..(end - start).max(1))
            } else {
                start - rng.gen_range(7 * DAY_MS..900 * DAY_MS)
            };
            let ua = match persona {
                Persona::Developer | Persona::CloudUser => *SDKS.choose(rng).unwrap(),
                _ => *BROWSERS.choose(rng).unwrap(),
            };
            // Heavy-tailed activity: most users are light, a few are heavy.
            let rate = b.requests_per_day * lognormal(rng, 0.9);
            accounts.push(Account {
                id: format!("acct-{}", hex(rng)),
                role: Role::Benign(persona),
                created_ms: created,
                active_from: created.max(start),
                active_to: end,
                org,
                api_key: format!("key-{}", hex(rng)),
                ips: vec![ip],
                user_agent: ua,
                card,
                rate_per_day: rate,
                tz_hours: *[-8i64, -5, 0, 1, 2, 5, 8, 9].choose(rng).unwrap(),
            });
        }
        // Benign customers of the reseller proxies.
        for _ in 0..b.reseller_customers {
            accounts.push(Account {
                id: format!("acct-{}", hex(rng)),
                role: Role::Benign(Persona::ResellerCustomer),
                created_ms: start - rng.gen_range(3 * DAY_MS..400 * DAY_MS),
                active_from: start,
                active_to: end,
                org: None,
                api_key: format!("key-{}", hex(rng)),
                ips: proxies.choose_multiple(rng, 6).cloned().collect(),
                user_agent: *SDKS.choose(rng).unwrap(),
                card: format!("pf-{}", hex(rng)),
                rate_per_day: b.requests_per_day * lognormal(rng, 0.9),
                tz_hours: *[-5i64, 0, 1, 8].choose(rng).unwrap(),
            });
        }
        // The data-labelling company: high, steady, templated, legitimate.
        let lab_org = format!("org-{}", hex(rng));
        let lab_ip = cloud_ip(rng);
        let lab_card = format!("pf-{}", hex(rng));
        for _ in 0..b.labelling_accounts {
            accounts.push(Account {
                id: format!("acct-{}", hex(rng)),
                role: Role::Benign(Persona::Labelling),
                created_ms: start - rng.gen_range(100 * DAY_MS..700 * DAY_MS),
                active_from: start,
                active_to: end,
                org: Some(lab_org.clone()),
                api_key: format!("key-{}", hex(rng)),
                ips: vec![lab_ip.clone()],
                user_agent: SDKS[0],
                card: lab_card.clone(),
                rate_per_day: b.labelling_requests_per_day,
                tz_hours: 0,
            });
        }
        // Campaigns.
        for (ci, c) in s.campaigns.iter().enumerate() {
            let from = start + (c.start_day * DAY_MS as f64) as i64;
            let to = (start + (c.end_day * DAY_MS as f64) as i64).min(end);
            let low = c.styles.contains(&Style::LowAndSlow);
            let hydra = c.styles.contains(&Style::Hydra);
            let ua = *[SDKS[2], SDKS[0], "python-requests/2.31.0"].choose(rng).unwrap();
            let mut card = String::new();
            // The campaign's own cloud /24s (unless it hides in the hydra pool).
            let own_ips: Vec<(String, u32)> = (0..8).map(|_| cloud_ip(rng)).collect();
            for k in 0..c.accounts {
                if k % c.accounts_per_card.max(1) == 0 {
                    card = format!("pf-{}", hex(rng));
                }
                let created = if low {
                    // Aged accounts, bought or farmed in advance.
                    from - rng.gen_range(20 * DAY_MS..200 * DAY_MS)
                } else {
                    from - rng.gen_range(0..3 * DAY_MS)
                };
                let ips = if hydra {
                    proxies.choose_multiple(rng, 6).cloned().collect()
                } else {
                    vec![own_ips[k % own_ips.len()].clone()]
                };
                let days = ((to - from) as f64 / DAY_MS as f64).max(1e-3);
                accounts.push(Account {
                    id: format!("acct-{}", hex(rng)),
                    role: Role::Campaign(ci),
                    created_ms: created,
                    active_from: from,
                    active_to: to,
                    org: None,
                    api_key: format!("key-{}", hex(rng)),
                    ips,
                    user_agent: ua,
                    card: card.clone(),
                    rate_per_day: c.requests_per_account / days,
                    tz_hours: 0,
                });
            }
        }
        // Interleave so nothing about position in the truth file or the
        // first appearance order says which accounts belong together.
        accounts.shuffle(rng);
        Population { accounts }
    }
}

/// exp(N(0, sigma)) scaled to mean 1.
pub fn lognormal(rng: &mut R, sigma: f64) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.gen_range(1e-12..1.0);
    let u2: f64 = rng.r#gen();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (sigma * z - sigma * sigma / 2.0).exp()
}

/// One line of the truth file.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Truth {
    pub account: String,
    /// `benign` or `campaign`.
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub persona: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
    /// `tuning` or `held-out` template family.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub split: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub styles: Vec<String>,
}

impl Population {
    pub fn truth<'a>(&'a self, s: &'a Scenario) -> impl Iterator<Item = Truth> + 'a {
        self.accounts.iter().map(move |a| match &a.role {
            Role::Benign(p) => Truth {
                account: a.id.clone(),
                label: "benign".into(),
                persona: Some(serde_json::to_value(p).unwrap().as_str().unwrap().to_string()),
                campaign: None,
                family: None,
                kind: None,
                split: None,
                styles: Vec::new(),
            },
            Role::Campaign(ci) => {
                let c = &s.campaigns[*ci];
                let f = text::family(c.family).expect("known family");
                Truth {
                    account: a.id.clone(),
                    label: "campaign".into(),
                    persona: None,
                    campaign: Some(c.id.clone()),
                    family: Some(c.family.to_string()),
                    kind: Some(f.kind.to_string()),
                    split: Some(if f.split == Split::Tuning { "tuning" } else { "held-out" }.to_string()),
                    styles: c
                        .styles
                        .iter()
                        .map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string())
                        .collect(),
                }
            }
        })
    }
}
