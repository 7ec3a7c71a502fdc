//! What to simulate: scale, mix, stealth, seed. Presets give the default
//! evaluation scenario, one scenario per stealth style, and the full-size
//! run; flags scale them.

use serde::Serialize;

pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

/// Ways a campaign hides, combinable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Style {
    /// Requests go through reseller proxies ("hydra clusters") that also
    /// carry benign customers.
    Hydra,
    /// Few requests per account per day, spread over the whole period, on
    /// older accounts.
    LowAndSlow,
    /// Template wording rotated through paraphrases.
    Paraphrased,
    /// Switches to a newly released model within hours of its release.
    Pivot,
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignSpec {
    pub id: String,
    /// Template family (see `text::FAMILIES`).
    pub family: &'static str,
    pub accounts: usize,
    pub requests_per_account: f64,
    pub styles: Vec<Style>,
    pub start_day: f64,
    pub end_day: f64,
    /// Accounts sharing one payment instrument.
    pub accounts_per_card: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Benign {
    pub accounts: usize,
    /// Mean requests per day of an ordinary user.
    pub requests_per_day: f64,
    pub student_share: f64,
    pub developer_share: f64,
    /// Share of accounts that belong to companies sharing an office IP and card.
    pub company_share: f64,
    /// Share of accounts behind popular cloud ASNs.
    pub cloud_share: f64,
    /// Share of accounts created during the simulated period.
    pub new_signup_share: f64,
    /// Benign customers of the reseller proxies campaigns also use.
    pub reseller_customers: usize,
    /// The heavy, templated, legitimate data-labelling customer.
    pub labelling_accounts: usize,
    pub labelling_requests_per_day: f64,
    /// Share of benign answers that hit max_tokens.
    pub max_tokens_hit_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub start_ms: i64,
    pub days: f64,
    /// When a new model is released, in days from the start.
    pub release_day: f64,
    pub benign: Benign,
    pub campaigns: Vec<CampaignSpec>,
}

/// 2026-01-05T00:00:00Z, a Monday.
pub const START_MS: i64 = 1_767_571_200_000;

fn campaign(id: &str, family: &'static str, accounts: usize, rpa: f64, styles: &[Style]) -> CampaignSpec {
    CampaignSpec {
        id: id.into(),
        family,
        accounts,
        requests_per_account: rpa,
        styles: styles.to_vec(),
        start_day: 0.25,
        end_day: 3.0,
        accounts_per_card: 25,
    }
}

impl Scenario {
    pub const PRESETS: &'static [&'static str] =
        &["default", "low-and-slow", "paraphrased", "hydra", "no-elicitation", "full-size"];

    /// The default evaluation scenario: 20,000 benign accounts over three
    /// days, and campaigns in every style from tuning and held-out families.
    pub fn default_eval(seed: u64) -> Self {
        use Style::*;
        Scenario {
            name: "default".into(),
            seed,
            start_ms: START_MS,
            days: 3.0,
            release_day: 1.5,
            benign: Benign {
                // Some accounts stay silent over three days; this leaves
                // over 20,000 benign accounts that actually send.
                accounts: 23_000,
                requests_per_day: 4.0,
                student_share: 0.10,
                developer_share: 0.15,
                company_share: 0.15,
                cloud_share: 0.10,
                new_signup_share: 0.08,
                reseller_customers: 300,
                labelling_accounts: 5,
                labelling_requests_per_day: 3_000.0,
                max_tokens_hit_share: 0.05,
            },
            campaigns: vec![
                campaign("c1", "T1", 200, 60.0, &[]),
                campaign("c2", "T2", 150, 60.0, &[Pivot]),
                campaign("c3", "T3", 150, 60.0, &[]),
                campaign("c4", "T4", 150, 60.0, &[Hydra]),
                campaign("c5", "T1", 150, 12.0, &[LowAndSlow]),
                campaign("c6", "H1", 150, 60.0, &[Paraphrased]),
                campaign("c7", "H2", 150, 60.0, &[Pivot]),
                campaign("c8", "H3", 150, 60.0, &[Hydra]),
                campaign("c9", "H4", 100, 12.0, &[LowAndSlow, Paraphrased]),
            ],
        }
    }

    pub fn preset(name: &str, seed: u64) -> Option<Self> {
        use Style::*;
        let mut s = Self::default_eval(seed);
        s.name = name.into();
        let all = |s: &mut Scenario, f: &dyn Fn(&mut CampaignSpec)| s.campaigns.iter_mut().for_each(f);
        match name {
            "default" => {}
            "low-and-slow" => all(&mut s, &|c| {
                c.styles = vec![LowAndSlow];
                c.requests_per_account = 12.0;
            }),
            "paraphrased" => all(&mut s, &|c| c.styles = vec![Paraphrased]),
            "hydra" => all(&mut s, &|c| c.styles = vec![Hydra]),
            "no-elicitation" => {
                // Capability sweeps only: no elicitation wording at all.
                s.campaigns.retain(|c| matches!(c.family, "T3" | "H3"));
                for c in &mut s.campaigns {
                    c.accounts = 400;
                }
            }
            "full-size" => {
                // The reported campaign: 25,000 accounts, 28.8 million
                // exchanges over six weeks (about 1,150 per account).
                s.days = 42.0;
                s.release_day = 21.0;
                s.benign.accounts = 100_000;
                s.benign.reseller_customers = 2_000;
                let total: usize = s.campaigns.iter().map(|c| c.accounts).sum();
                for c in &mut s.campaigns {
                    c.accounts = c.accounts * 25_000 / total;
                    c.requests_per_account = 1_152.0;
                    c.end_day = 42.0;
                }
                let have: usize = s.campaigns.iter().map(|c| c.accounts).sum();
                s.campaigns[0].accounts += 25_000 - have;
            }
            _ => return None,
        }
        Some(s)
    }

    pub fn campaign_accounts(&self) -> usize {
        self.campaigns.iter().map(|c| c.accounts).sum()
    }

    /// About how many requests the scenario streams (for progress bars).
    pub fn expected_requests(&self) -> u64 {
        let b = &self.benign;
        let benign = b.accounts as f64 * b.requests_per_day * self.days
            + b.labelling_accounts as f64 * b.labelling_requests_per_day * self.days
            + b.reseller_customers as f64 * b.requests_per_day * self.days;
        let campaigns: f64 = self.campaigns.iter().map(|c| c.accounts as f64 * c.requests_per_account).sum();
        (benign + campaigns) as u64
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + (self.days * DAY_MS as f64) as i64
    }
}
