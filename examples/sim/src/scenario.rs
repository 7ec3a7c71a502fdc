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
    /// Each account, one by one, is drawn from the benign population's own
    /// distributions (age, volume, sessions and follow-ups, hours, answer
    /// sizes, user agents, models): nothing per account gives it away.
    Mimic,
    /// The operator's scheduler sends each prompt to several accounts within
    /// minutes (several samples per prompt), with changing partners.
    FanOut,
    /// Every request leaves through an address of a residential proxy pool
    /// the whole fleet shares.
    ProxyPool,
    /// Payment instruments shared in small groups.
    CardGroups,
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
    /// Accounts sharing one payment instrument (`CardGroups`: the most in
    /// a group; groups hold 3 up to this).
    pub accounts_per_card: usize,
    /// `FanOut`: the most accounts one prompt goes to, and how long the
    /// scheduler keeps a prompt open for more accounts, in minutes.
    pub fanout_max: usize,
    pub fanout_minutes: f64,
    /// `ProxyPool`: addresses in the pool (spread over /24s of several
    /// residential networks).
    pub pool_addresses: usize,
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
    /// Innocent sharing (all 0 in the presets that predate them):
    pub sharing: Sharing,
    /// Most benign prompts unique, as in real logs (the mimicry presets);
    /// else the small vocabularies the older presets were measured with.
    pub diverse_text: bool,
}

impl Benign {
    /// The vocabulary benign prompts draw on.
    pub fn vocab(&self) -> crate::text::Vocab {
        if self.diverse_text { crate::text::Vocab::Diverse } else { crate::text::Vocab::Classic }
    }
}

/// Innocent sharing among benign users: what cross-account detectors must
/// not mistake for a campaign.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sharing {
    /// Share of opening prompts that are one of a few popular prompts,
    /// sent verbatim by many people.
    pub popular_prompt_share: f64,
    /// Share of accounts that are students on a campus (one NAT per campus);
    /// most of them are in classes that ask the same homework questions in
    /// the same hour, twice a week.
    pub campus_share: f64,
    pub campuses: usize,
    /// Share of accounts on mobile networks: a new carrier-grade NAT address
    /// for every session, across the carrier's prefixes.
    pub mobile_share: f64,
    /// Share of accounts in households or small teams sharing one card
    /// (2 to 4 accounts, no organisation).
    pub household_share: f64,
    /// Evaluation pipelines: organisations whose few accounts send the same
    /// benchmark prompts within seconds of each other, several runs a day.
    pub eval_orgs: usize,
}

impl Sharing {
    /// Whether any innocent sharing is simulated.
    pub fn enabled(&self) -> bool {
        self.popular_prompt_share > 0.0
            || self.campus_share > 0.0
            || self.mobile_share > 0.0
            || self.household_share > 0.0
            || self.eval_orgs > 0
    }
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
        fanout_max: 5,
        fanout_minutes: 15.0,
        pool_addresses: 400,
    }
}

impl Scenario {
    pub const PRESETS: &'static [&'static str] = &[
        "default",
        "low-and-slow",
        "paraphrased",
        "hydra",
        "no-elicitation",
        "mimicry",
        "mimicry-fanout",
        "mimicry-sweep",
        "full-size",
    ];

    /// The mimicry family: every campaign account looks like a customer on
    /// its own (`Mimic`); campaigns show only in what accounts share. Seven
    /// days, over 20,000 benign accounts with every kind of innocent sharing.
    /// Campaigns use the sweep families (no elicitation wording), tuning
    /// (TS*) and held-out (HS*).
    pub fn mimicry(name: &str, seed: u64) -> Option<Self> {
        use Style::*;
        let mut s = Self::default_eval(seed);
        s.name = name.into();
        s.days = 7.0;
        s.release_day = 3.5;
        s.benign.sharing = Sharing {
            popular_prompt_share: 0.05,
            campus_share: 0.08,
            campuses: 3,
            mobile_share: 0.2,
            household_share: 0.04,
            eval_orgs: 3,
        };
        s.benign.diverse_text = true;
        let combos: [&[Style]; 8] = match name {
            "mimicry" => [
                &[FanOut, ProxyPool],
                &[Paraphrased, CardGroups],
                &[FanOut, CardGroups],
                &[Paraphrased, ProxyPool],
                &[FanOut, ProxyPool],
                &[Paraphrased, CardGroups],
                &[FanOut, Paraphrased, CardGroups],
                &[Paraphrased, ProxyPool, CardGroups],
            ],
            "mimicry-fanout" => [
                &[FanOut, ProxyPool],
                &[FanOut, CardGroups],
                &[FanOut],
                &[FanOut, ProxyPool, CardGroups],
                &[FanOut, ProxyPool],
                &[FanOut, CardGroups],
                &[FanOut],
                &[FanOut, ProxyPool, CardGroups],
            ],
            "mimicry-sweep" => [
                &[Paraphrased, ProxyPool],
                &[Paraphrased, CardGroups],
                &[Paraphrased],
                &[Paraphrased, ProxyPool, CardGroups],
                &[Paraphrased, ProxyPool],
                &[Paraphrased, CardGroups],
                &[Paraphrased],
                &[Paraphrased, ProxyPool, CardGroups],
            ],
            _ => return None,
        };
        let families = ["TS1", "TS2", "TS1", "TS2", "HS1", "HS2", "HS1", "HS2"];
        s.campaigns = combos
            .iter()
            .zip(families)
            .enumerate()
            .map(|(i, (styles, family))| {
                let mut st = vec![Mimic];
                st.extend_from_slice(styles);
                let mut c = campaign(&format!("m{}", i + 1), family, 150, 0.0, &st);
                c.start_day = 0.0;
                c.end_day = 7.0;
                c.accounts_per_card = 6;
                c
            })
            .collect();
        Some(s)
    }

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
                sharing: Sharing::default(),
                diverse_text: false,
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
        if name.starts_with("mimicry") {
            return Self::mimicry(name, seed);
        }
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
        let campaigns: f64 = self
            .campaigns
            .iter()
            .map(|c| {
                // A mimic sends like a benign user.
                let per = if c.styles.contains(&Style::Mimic) {
                    b.requests_per_day * self.days
                } else {
                    c.requests_per_account
                };
                c.accounts as f64 * per
            })
            .sum();
        (benign + campaigns) as u64
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + (self.days * DAY_MS as f64) as i64
    }
}
