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
    /// A student on a campus network (one NAT), usually in a class.
    CampusStudent,
    /// On a mobile network: a new carrier-grade NAT address every session.
    Mobile,
    /// Shares a card with 1 to 3 others (a household or a small team).
    Household,
    /// An evaluation pipeline's account: benchmark prompts, in runs.
    Evaluation,
}

/// How an account's address changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Any of its addresses, request by request.
    PerRequest,
    /// One of its addresses per session (a mobile network).
    PerSession,
}

/// A class: students of one campus who ask the same homework questions in
/// the same hour, at these session times.
#[derive(Debug, Clone)]
pub struct Class {
    pub slots: Vec<i64>,
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
    pub hop: Hop,
    /// Index into `Population::classes`.
    pub class: Option<u32>,
    /// Which evaluation organisation it runs benchmarks for.
    pub eval_org: Option<usize>,
}

pub struct Population {
    pub accounts: Vec<Account>,
    pub classes: Vec<Class>,
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
                hop: Hop::PerRequest,
                class: None,
                eval_org: None,
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
                user_agent: SDKS.choose(rng).unwrap(),
                card: format!("pf-{}", hex(rng)),
                rate_per_day: b.requests_per_day * lognormal(rng, 0.9),
                tz_hours: *[-5i64, 0, 1, 8].choose(rng).unwrap(),
                hop: Hop::PerRequest,
                class: None,
                eval_org: None,
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
                hop: Hop::PerRequest,
                class: None,
                eval_org: None,
            });
        }
        let mut classes = Vec::new();
        let carriers = mobile_carriers();
        let mut residents = Vec::new();
        if b.sharing.enabled() {
            // Innocent sharing, drawn only when asked for so that older
            // scenarios stream exactly what they did.
            classes = share_innocently(s, &mut accounts, &carriers, rng);
            residents =
                (0..accounts.len()).filter(|&i| matches!(accounts[i].role, Role::Benign(Persona::Casual))).collect();
        }
        // Campaigns.
        for (ci, c) in s.campaigns.iter().enumerate() {
            let from = start + (c.start_day * DAY_MS as f64) as i64;
            let to = (start + (c.end_day * DAY_MS as f64) as i64).min(end);
            if c.styles.contains(&Style::Mimic) {
                mimics(s, ci, from, to, &carriers, &mut residents, &mut accounts, rng);
                continue;
            }
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
                    hop: Hop::PerRequest,
                    class: None,
                    eval_org: None,
                });
            }
        }
        // Interleave so nothing about position in the truth file or the
        // first appearance order says which accounts belong together.
        accounts.shuffle(rng);
        Population { accounts, classes }
    }
}

/// Three mobile carriers' carrier-grade NAT pools: one address per /24 of
/// 80, 50 and 30 prefixes, under mobile ASNs.
fn mobile_carriers() -> Vec<Vec<(String, u32)>> {
    [(80u8, 21_928u32), (50, 20_057), (30, 22_394)]
        .iter()
        .enumerate()
        .map(|(k, &(n, asn))| (0..n).map(|p| (ip4(100 + k as u8, 64 + p, 7, 1 + p), asn)).collect())
        .collect()
}

/// Turns some benign accounts into the innocent sharers of `s.benign.sharing`
/// and adds the evaluation organisations; returns the classes.
fn share_innocently(
    s: &Scenario,
    accounts: &mut Vec<Account>,
    carriers: &[Vec<(String, u32)>],
    rng: &mut R,
) -> Vec<Class> {
    let sh = &s.benign.sharing;
    let (start, end) = (s.start_ms, s.end_ms());
    let casual: Vec<usize> = (0..accounts.len())
        .filter(|&i| matches!(accounts[i].role, Role::Benign(Persona::Casual | Persona::Student)))
        .collect();
    let mut pool = casual;
    pool.shuffle(rng);
    let total = accounts.len() as f64;
    let mut take = |share: f64| -> Vec<usize> {
        let n = ((total * share) as usize).min(pool.len());
        pool.split_off(pool.len() - n)
    };
    // Campuses: every student behind one NAT (four addresses on one /24);
    // most of them in classes of 15 to 40 with two sessions a week.
    let campus = take(sh.campus_share);
    let nats: Vec<Vec<(String, u32)>> = (0..sh.campuses.max(1))
        .map(|c| (0..4).map(|h| (ip4(128 + c as u8, 32, 9, 10 + h), 11_537)).collect())
        .collect();
    let mut classes = Vec::new();
    let mut class_left = 0usize;
    for (n, &i) in campus.iter().enumerate() {
        let c = n % nats.len();
        let a = &mut accounts[i];
        a.role = Role::Benign(Persona::CampusStudent);
        a.ips = nats[c].clone();
        a.tz_hours = [-5, 1, 8][c % 3];
        if rng.gen_bool(0.7) {
            if class_left == 0 {
                class_left = rng.gen_range(15..=40);
                classes.push(Class { slots: class_slots(start, end, a.tz_hours, rng) });
            }
            class_left -= 1;
            a.class = Some(classes.len() as u32 - 1);
        }
    }
    // Mobile users: a new carrier-grade NAT address every session.
    for i in take(sh.mobile_share) {
        let a = &mut accounts[i];
        a.role = Role::Benign(Persona::Mobile);
        a.ips = carriers[rng.gen_range(0..carriers.len())].clone();
        a.hop = Hop::PerSession;
    }
    // Households and small teams: 2 to 4 accounts on one card, no org.
    let household = take(sh.household_share);
    for group in household.chunks(4) {
        let size = rng.gen_range(2..=4).min(group.len());
        let card = format!("pf-{}", hex(rng));
        for &i in &group[..size] {
            accounts[i].role = Role::Benign(Persona::Household);
            accounts[i].card = card.clone();
        }
    }
    // Evaluation pipelines: 3 or 4 accounts of one org on one cloud address.
    for o in 0..sh.eval_orgs {
        let org = format!("org-{}", hex(rng));
        let ip = cloud_ip(rng);
        let card = format!("pf-{}", hex(rng));
        for _ in 0..rng.gen_range(3..=4) {
            accounts.push(Account {
                id: format!("acct-{}", hex(rng)),
                role: Role::Benign(Persona::Evaluation),
                created_ms: start - rng.gen_range(60 * DAY_MS..600 * DAY_MS),
                active_from: start,
                active_to: end,
                org: Some(org.clone()),
                api_key: format!("key-{}", hex(rng)),
                ips: vec![ip.clone()],
                user_agent: SDKS[0],
                card: card.clone(),
                rate_per_day: 0.0,
                tz_hours: 0,
                hop: Hop::PerRequest,
                class: None,
                eval_org: Some(o),
            });
        }
    }
    classes
}

/// Two sessions a week at a fixed local hour between 9 and 16.
fn class_slots(start: i64, end: i64, tz: i64, rng: &mut R) -> Vec<i64> {
    let days = [rng.gen_range(0..3), rng.gen_range(3..7)];
    let hour = rng.gen_range(9..17) - tz;
    let mut slots = Vec::new();
    let mut week = start;
    while week < end {
        for d in days {
            let t = week + d * DAY_MS + hour * 3_600_000;
            if t >= start && t < end {
                slots.push(t);
            }
        }
        week += 7 * DAY_MS;
    }
    slots.sort_unstable();
    slots
}

/// A campaign's accounts, each drawn like a benign user: aged, benign
/// volumes and hours, ordinary user agents; only what they share (a proxy
/// pool, cards in small groups, and the prompts the stream gives them)
/// ties them together.
#[allow(clippy::too_many_arguments)]
fn mimics(
    s: &Scenario,
    ci: usize,
    from: i64,
    to: i64,
    carriers: &[Vec<(String, u32)>],
    residents: &mut Vec<usize>,
    accounts: &mut Vec<Account>,
    rng: &mut R,
) {
    let c = &s.campaigns[ci];
    let b = &s.benign;
    let proxy = c.styles.contains(&Style::ProxyPool);
    let cards = c.styles.contains(&Style::CardGroups);
    // A residential proxy pool: four exits per /24, across home networks;
    // some of its addresses are also real homes of benign users.
    let pool: Vec<(String, u32)> = (0..c.pool_addresses)
        .map(|i| {
            let p = i / 4;
            (ip4(70 + (p / 250) as u8, (p % 250) as u8, 40 + ci as u8, 20 + (i % 4) as u8), RESIDENTIAL_ASNS[p % 8])
        })
        .collect();
    if proxy {
        for _ in 0..(pool.len() / 8).min(residents.len()) {
            let i = residents.swap_remove(rng.gen_range(0..residents.len()));
            accounts[i].ips = vec![pool[rng.gen_range(0..pool.len())].clone()];
        }
    }
    let (mut card, mut card_left) = (String::new(), 0usize);
    for _ in 0..c.accounts {
        if card_left == 0 {
            card = format!("pf-{}", hex(rng));
            card_left = if cards { rng.gen_range(3..=c.accounts_per_card.max(3)) } else { 1 };
        }
        card_left -= 1;
        let (ips, hop) = if proxy {
            (pool.clone(), Hop::PerRequest)
        } else if rng.gen_bool(b.sharing.mobile_share) {
            (carriers[rng.gen_range(0..carriers.len())].clone(), Hop::PerSession)
        } else {
            (vec![residential_ip(rng)], Hop::PerRequest)
        };
        let sdk = rng.gen_bool(b.developer_share + b.cloud_share);
        // Ages as the benign population's: bought accounts of every age, a
        // few opened during the period.
        let created = if rng.gen_bool(b.new_signup_share) {
            from + rng.gen_range(0..(to - from).max(1))
        } else {
            from - rng.gen_range(7 * DAY_MS..900 * DAY_MS)
        };
        accounts.push(Account {
            id: format!("acct-{}", hex(rng)),
            role: Role::Campaign(ci),
            created_ms: created,
            active_from: created.max(from),
            active_to: to,
            org: None,
            api_key: format!("key-{}", hex(rng)),
            ips,
            user_agent: if sdk { SDKS.choose(rng).unwrap() } else { BROWSERS.choose(rng).unwrap() },
            card: card.clone(),
            rate_per_day: b.requests_per_day * lognormal(rng, 0.9),
            tz_hours: *[-8i64, -5, 0, 1, 2, 5, 8, 9].choose(rng).unwrap(),
            hop,
            class: None,
            eval_org: None,
        });
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
