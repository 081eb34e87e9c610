//! The synthetic world both APIs serve: career sites and job postings, seeded and
//! deterministic, and the changes that simulated hours of activity bring.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, TimeZone, Timelike, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::pay::{self, Pay, Salary};

const INDUSTRIES: &[&str] = &[
    "fintech",
    "biotech",
    "saas",
    "e-commerce",
    "healthcare",
    "logistics",
    "edtech",
    "cybersecurity",
    "gaming",
    "climate",
    "manufacturing",
    "media",
    "insurance",
    "real-estate",
    "ai",
];
const CATEGORIES: &[&str] = &["b2b", "b2c", "saas", "service-provider"];
const SIZES: &[&str] = &[
    "1-10",
    "11-50",
    "51-200",
    "201-500",
    "501-1000",
    "1001-5000",
    "5001-10000",
    "10001+",
];
const FUNDING: &[&str] = &[
    "pre_seed",
    "seed",
    "series_a",
    "series_b",
    "series_c",
    "series_d",
    "ipo",
    "private_equity",
    "bootstrapped",
];
const ATS: &[&str] = &[
    "greenhouse",
    "lever",
    "workday",
    "ashby",
    "smartrecruiters",
    "bamboohr",
    "personio",
    "custom",
];
const COUNTRY_CODES: &[&str] = &[
    "US", "US", "US", "DE", "CH", "JP", "GB", "FR", "BR", "IN", "CA", "NL", "KR", "PL",
];
const NAME_A: &[&str] = &[
    "Acme",
    "Blue",
    "Nordic",
    "Quantum",
    "Silver",
    "Bright",
    "Atlas",
    "Vertex",
    "Helio",
    "Cobalt",
    "Lumen",
    "Pioneer",
    "Crescent",
    "Summit",
    "Orbit",
    "Maple",
    "Granite",
    "Nimbus",
    "Velvet",
    "Kite",
    "Harbor",
    "Juniper",
    "Polar",
    "Redwood",
    "Sable",
    "Tundra",
    "Aurora",
    "Beacon",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Glacier",
    "Horizon",
    "Indigo",
    "Jasper",
    "Keystone",
    "Lattice",
    "Meridian",
    "Northwind",
];
const NAME_B: &[&str] = &[
    "Labs",
    "Systems",
    "Analytics",
    "Health",
    "Robotics",
    "Logistics",
    "Bank",
    "Energy",
    "Works",
    "Foods",
    "Capital",
    "Software",
    "Bio",
    "Media",
    "Networks",
    "Dynamics",
    "Partners",
    "Studios",
    "Materials",
    "Mobility",
    "Security",
    "Payments",
    "Learning",
    "Foundry",
];
const NAME_SUFFIX: &[&str] = &["Inc.", "GmbH", "AG", "Ltd", "LLC", "SAS", "BV", "", "Co."];
const UNICODE_NAMES: &[&str] = &[
    "Zürich Analytics AG",
    "株式会社ミライ",
    "Société Générale d'Études",
    "Ølstad & Sønner AS",
    "Dōgen Robotics 株式会社",
    "Café Crème SAS",
    "São Paulo Fintech Ltda.",
    "Łódź Software Sp. z o.o.",
    "Ελληνική Τεχνολογία ΑΕ",
    "Rocket 🚀 Labs",
    "Müller & Söhne GmbH",
    "서울 데이터 주식회사",
    "Ñandú Energía S.A.",
];
const RENAMES: &[&str] = &[
    "Group",
    "Holdings",
    "International",
    "Global",
    "Technologies",
];
const SUMMARY_WHAT: &[&str] = &[
    "builds payment infrastructure",
    "develops diagnostic tools",
    "runs a logistics marketplace",
    "makes developer tooling",
    "designs learning software",
    "operates renewable energy assets",
    "provides managed security services",
    "publishes mobile games",
    "offers specialty insurance",
    "manufactures industrial sensors",
];
const SUMMARY_WHO: &[&str] = &[
    "small businesses",
    "hospitals",
    "retailers",
    "engineering teams",
    "schools and universities",
    "utilities",
    "enterprises",
    "consumers",
    "freight forwarders",
];

const TITLES: &[&str] = &[
    "Software Engineer",
    "Senior Software Engineer",
    "Data Scientist",
    "Product Manager",
    "Backend Developer",
    "Frontend Engineer",
    "DevOps Engineer",
    "Sales Executive",
    "Account Manager",
    "Marketing Manager",
    "Registered Nurse",
    "Mechanical Engineer",
    "Data Engineer",
    "UX Designer",
    "Recruiter",
    "Financial Analyst",
    "Customer Success Manager",
    "Machine Learning Engineer",
    "Site Reliability Engineer",
    "Intern - Software Engineering",
    "Junior Data Analyst",
    "Staff Engineer",
    "Ingénieur Logiciel",
    "データサイエンティスト",
    "Softwareentwickler (m/w/d)",
];
const JOB_TYPES: &[&str] = &[
    "Full Time",
    "Part Time",
    "Contract",
    "Internship",
    "Temporary",
];
const SENIORITY: &[&str] = &[
    "Entry Level",
    "Mid Level",
    "Senior Level",
    "Director",
    "Executive",
    "Internship",
];
const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Software Engineering",
    "Data",
    "Product",
    "Sales",
    "Marketing",
    "Finance",
    "Operations",
    "Human Resources",
    "Customer Success",
    "Design",
    "Legal",
    "Healthcare",
];
const SKILLS: &[&str] = &[
    "Python",
    "Rust",
    "Kubernetes",
    "AWS",
    "SQL",
    "TypeScript",
    "React",
    "Go",
    "Java",
    "Excel",
    "Salesforce",
    "Figma",
    "Terraform",
    "Communication",
    "Negotiation",
    "Spark",
    "C++",
];
const JOB_INDUSTRIES: &[&str] = &[
    "Computer Software",
    "Internet",
    "Financial Services",
    "Hospital & Health Care",
    "Staffing and Recruiting",
    "Retail",
    "Automotive",
    "Biotechnology",
    "Education",
    "Telecommunications",
];
/// Job boards proper; every other `Job Board` value is a company career page.
pub(crate) const BOARDS: &[&str] = &["Linkedin", "Indeed", "Glassdoor", "ZipRecruiter"];
const ALL_BOARDS: &[&str] = &[
    "Linkedin",
    "Indeed",
    "Glassdoor",
    "ZipRecruiter",
    "Greenhouse",
    "Lever",
    "Workday",
    "Company Website",
];
const DESC_SENTENCES: &[&str] = &[
    "You will work closely with a cross-functional team to ship features our customers love.",
    "We value ownership, clear writing and a bias for action.",
    "Our stack is modern and we invest heavily in tooling and automation.",
    "The role reports to the head of the department and has room to grow.",
    "We offer flexible hours, a learning budget and generous parental leave.",
    "Experience with distributed systems is a plus but not required.",
    "You are comfortable with ambiguity and enjoy solving hard problems.",
    "Wir freuen uns auf Ihre Bewerbung — auch ohne Anschreiben.",
    "Vous rejoindrez une équipe internationale et bienveillante.",
    "This position may require occasional travel to customer sites.",
    "We are an equal opportunity employer and welcome applicants from all backgrounds.",
    "Compensation includes base salary, equity and an annual bonus.",
];

/// One location: city, state, the spellings its country appears under, currency, symbol.
struct Place {
    city: &'static str,
    state: &'static str,
    countries: &'static [&'static str],
    currency: &'static str,
    symbol: &'static str,
    scale: i64,
}

const PLACES: &[Place] = &[
    Place {
        city: "San Francisco",
        state: "California",
        countries: &["United States", "US", "USA"],
        currency: "USD",
        symbol: "$",
        scale: 1,
    },
    Place {
        city: "New York",
        state: "New York",
        countries: &["United States", "US"],
        currency: "USD",
        symbol: "$",
        scale: 1,
    },
    Place {
        city: "Austin",
        state: "Texas",
        countries: &["United States", "US"],
        currency: "USD",
        symbol: "$",
        scale: 1,
    },
    Place {
        city: "Seattle",
        state: "Washington",
        countries: &["United States", "US"],
        currency: "USD",
        symbol: "$",
        scale: 1,
    },
    Place {
        city: "Berlin",
        state: "Berlin",
        countries: &["Germany", "DE"],
        currency: "EUR",
        symbol: "€",
        scale: 1,
    },
    Place {
        city: "München",
        state: "Bavaria",
        countries: &["Germany"],
        currency: "EUR",
        symbol: "€",
        scale: 1,
    },
    Place {
        city: "Zürich",
        state: "Zürich",
        countries: &["Switzerland", "CH"],
        currency: "CHF",
        symbol: "CHF ",
        scale: 1,
    },
    Place {
        city: "東京",
        state: "Tokyo",
        countries: &["Japan"],
        currency: "JPY",
        symbol: "¥",
        scale: 150,
    },
    Place {
        city: "London",
        state: "England",
        countries: &["United Kingdom", "UK"],
        currency: "GBP",
        symbol: "£",
        scale: 1,
    },
    Place {
        city: "Paris",
        state: "Île-de-France",
        countries: &["France"],
        currency: "EUR",
        symbol: "€",
        scale: 1,
    },
    Place {
        city: "São Paulo",
        state: "São Paulo",
        countries: &["Brazil"],
        currency: "BRL",
        symbol: "R$",
        scale: 5,
    },
    Place {
        city: "Bengaluru",
        state: "Karnataka",
        countries: &["India"],
        currency: "INR",
        symbol: "₹",
        scale: 80,
    },
    Place {
        city: "Toronto",
        state: "Ontario",
        countries: &["Canada"],
        currency: "CAD",
        symbol: "CA$",
        scale: 1,
    },
];

/// Formats a timestamp the way the Jobo feed does: RFC 3339, UTC, whole seconds.
pub(crate) fn fmt_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const HEADQUARTERS: &[(&str, Option<&str>, &str)] = &[
    ("San Francisco", Some("California"), "United States"),
    ("New York", Some("New York"), "United States"),
    ("Austin", Some("Texas"), "United States"),
    ("Berlin", None, "Germany"),
    ("London", None, "United Kingdom"),
    ("Toronto", Some("Ontario"), "Canada"),
    ("Paris", None, "France"),
    ("Bangalore", Some("Karnataka"), "India"),
];
const INVESTORS: &[&str] = &[
    "Sequoia",
    "Accel",
    "Index Ventures",
    "a16z",
    "Balderton",
    "Y Combinator",
    "Atomico",
    "General Catalyst",
];
const PEOPLE: &[&str] = &[
    "Ada Moreau",
    "Sam Okafor",
    "Lena Fischer",
    "Ravi Iyer",
    "Maya Chen",
    "Tom Novak",
    "Ines Duarte",
    "Jonas Berg",
];
const REVENUE: &[&str] = &["<$1M", "$1M-$10M", "$10M-$50M", "$50M-$100M", "$100M+"];
const NAICS: &[&str] = &["541511", "541512", "518210", "522320", "621111", "611710"];
const TECH: &[&str] = &[
    "rust",
    "python",
    "go",
    "typescript",
    "postgres",
    "kafka",
    "kubernetes",
    "snowflake",
    "react",
    "terraform",
];

fn pick_tuple<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn pick<'a>(rng: &mut ChaCha8Rng, xs: &[&'a str]) -> &'a str {
    // Only ever called with the non-empty constant tables above.
    xs[rng.random_range(0..xs.len())]
}

fn pick_some(rng: &mut ChaCha8Rng, xs: &[&str], lo: usize, hi: usize) -> Vec<String> {
    let n = rng.random_range(lo..=hi).min(xs.len());
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let x = pick(rng, xs);
        if !out.iter().any(|o| o == x) {
            out.push(x.to_string());
        }
    }
    out
}

fn maybe<T>(rng: &mut ChaCha8Rng, p: f64, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> Option<T> {
    if rng.random_bool(p) {
        Some(f(rng))
    } else {
        None
    }
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn slugify(name: &str, id: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.len() < 3 {
        format!("co-{}", &id[..8])
    } else {
        s
    }
}

/// A company career site as the Jobo feed knows it, with the hidden attributes
/// its filters read.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub id: String,
    pub name_base: String,
    /// The name as URLs write it (`acme-labs-inc`): its website is `www.<slug>.com`.
    pub slug: String,
    pub rename: Option<&'static str>,
    pub website: Option<String>,
    pub logo_url: Option<String>,
    pub summary: Option<String>,
    pub industries: Vec<String>,
    pub categories: Vec<String>,
    pub linkedin_url: Option<String>,
    pub crunchbase_url: Option<String>,
    pub ats: String,
    pub listing_url: String,
    pub discovered_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub has_details: bool,
    pub extra: Option<(String, Value)>,
    pub company_size: Option<String>,
    pub country_code: Option<String>,
    pub funding_stage: Option<String>,
    pub company_type: Option<String>,
    pub founded_year: Option<i64>,
    pub is_agency: bool,
}

impl Site {
    /// The display name, which renames change without touching the stable id.
    pub fn name(&self) -> String {
        match self.rename {
            Some(r) => format!("{} {r}", self.name_base),
            None => self.name_base.clone(),
        }
    }

    /// The row exactly as `career_sites[]` carries it.
    pub fn to_json(&self, base_url: &str) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("name".into(), json!(self.name()));
        m.insert("website".into(), json!(self.website));
        m.insert("logo_url".into(), json!(self.logo_url));
        m.insert("summary".into(), json!(self.summary));
        m.insert("industries".into(), json!(self.industries));
        m.insert("categories".into(), json!(self.categories));
        m.insert("linkedin_url".into(), json!(self.linkedin_url));
        m.insert("crunchbase_url".into(), json!(self.crunchbase_url));
        m.insert("ats".into(), json!(self.ats));
        m.insert("listing_url".into(), json!(self.listing_url));
        m.insert(
            "discovered_at".into(),
            json!(self.discovered_at.map(fmt_ts)),
        );
        m.insert("updated_at".into(), json!(fmt_ts(self.updated_at)));
        let details = self
            .has_details
            .then(|| format!("{base_url}/api/companies/{}", self.id));
        m.insert("details_url".into(), json!(details));
        if let Some((k, v)) = &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// The full company profile (`GET /api/companies/{id}`), or `None` where Jobo has none:
    /// the feed row's `details_url` is null, or (one listed profile in 40) it is set but the
    /// profile has gone since, merged or removed, and the URL answers 404. Its details are
    /// drawn from the id, so a profile is the same every time it is asked for, until the
    /// site changes.
    pub fn profile_json(&self) -> Option<Value> {
        if !self.has_details {
            return None;
        }
        let seed = self
            .id
            .bytes()
            .fold(0xCAFE_F00Du64, |h, b| h.rotate_left(5) ^ u64::from(b));
        if seed % 40 == 7 {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let slug = &self.slug;
        let (city, state, country) = *pick_tuple(&mut rng, HEADQUARTERS);
        let rounds = ["pre_seed", "seed", "series_a", "series_b", "series_c"];
        let n_rounds = rng.random_range(0..=4usize);
        let mut year = self.founded_year.unwrap_or(2015).max(2000);
        let funding_rounds: Vec<Value> = (0..n_rounds)
            .map(|i| {
                year += rng.random_range(0..=2);
                // The docs' amounts are integers; some sources send floats.
                let amount = rng.random_range(1..200) * 500_000;
                let amount = if rng.random_bool(0.3) {
                    json!(amount as f64)
                } else {
                    json!(amount)
                };
                json!({
                    "round": rounds[i.min(rounds.len() - 1)],
                    "date": format!("{year}-{:02}-01", rng.random_range(1..=12)),
                    "amount_usd": amount,
                    "investors": pick_some(&mut rng, INVESTORS, 1, 3),
                })
            })
            .collect();
        let total: i64 = funding_rounds
            .iter()
            .filter_map(|r| r["amount_usd"].as_f64())
            .sum::<f64>() as i64;
        let leadership: Vec<Value> = (0..rng.random_range(1..=4usize))
            .map(|i| {
                let person = pick(&mut rng, PEOPLE);
                let title = ["CEO", "CTO", "CFO", "VP Engineering"][i];
                json!({
                    "name": person,
                    "title": title,
                    "linkedin_url": maybe(&mut rng, 0.7, |_| format!(
                        "https://www.linkedin.com/in/{}",
                        person.to_lowercase().replace(' ', "-")
                    )),
                })
            })
            .collect();
        let mut ratings: Vec<Value> = Vec::new();
        for source in ["glassdoor", "indeed", "kununu"] {
            if rng.random_bool(0.6) {
                ratings.push(json!({
                    "source": source,
                    "rating": (rng.random_range(25..=50) as f64) / 10.0,
                    "review_count": rng.random_range(3..5000),
                }));
            }
        }
        let layoffs = maybe(
            &mut rng,
            0.1,
            |r| json!([{"date": "2024-01-15", "headcount": r.random_range(5..500)}]),
        );
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("name".into(), json!(self.name()));
        m.insert(
            "legal_name".into(),
            json!(format!("{} Ltd.", self.name_base)),
        );
        m.insert("description".into(), json!(self.summary));
        m.insert("website".into(), json!(self.website));
        m.insert("listing_url".into(), json!(self.listing_url));
        m.insert("logo_url".into(), json!(self.logo_url));
        m.insert("linkedin_url".into(), json!(self.linkedin_url));
        m.insert("crunchbase_url".into(), json!(self.crunchbase_url));
        m.insert(
            "twitter_url".into(),
            json!(maybe(&mut rng, 0.5, |_| format!("https://x.com/{slug}"))),
        );
        m.insert("headquarters_city".into(), json!(city));
        m.insert("headquarters_state".into(), json!(state));
        m.insert("headquarters_country".into(), json!(country));
        m.insert("country_code".into(), json!(self.country_code));
        m.insert("founding_year".into(), json!(self.founded_year));
        m.insert("company_size".into(), json!(self.company_size));
        m.insert(
            "revenue".into(),
            json!(maybe(&mut rng, 0.6, |r| pick(r, REVENUE).to_string())),
        );
        m.insert("is_agency".into(), json!(self.is_agency));
        m.insert("industries".into(), json!(self.industries));
        m.insert(
            "naics_codes".into(),
            json!(pick_some(&mut rng, NAICS, 0, 2)),
        );
        m.insert("company_type".into(), json!(self.company_type));
        m.insert("funding_stage".into(), json!(self.funding_stage));
        m.insert(
            "total_funding_usd".into(),
            json!((total > 0).then_some(total)),
        );
        m.insert("funding_rounds".into(), json!(funding_rounds));
        m.insert("leadership".into(), json!(leadership));
        m.insert("layoffs".into(), json!(layoffs));
        m.insert("ratings".into(), json!(ratings));
        m.insert(
            "h1b_filings".into(),
            json!(maybe(&mut rng, 0.4, |r| r.random_range(0..900))),
        );
        m.insert("tech_stack".into(), json!(pick_some(&mut rng, TECH, 0, 5)));
        m.insert(
            "page_rank".into(),
            json!((rng.random_range(0..10_000) as f64) / 1000.0),
        );
        m.insert("updated_at".into(), json!(fmt_ts(self.updated_at)));
        // Not a documented schema: now and then a field nobody listed.
        if rng.random_bool(0.05) {
            m.insert("esg_score".into(), json!(rng.random_range(0..100)));
        }
        Some(Value::Object(m))
    }
}

/// One job posting as Sentrion serves it, plus its hidden attributes.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub seq: i64,
    pub ts_ms: i64,
    pub job_type: Option<String>,
    pub title: Option<String>,
    pub apply_url: Option<String>,
    pub valid_through: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub job_board: Option<String>,
    pub description: Option<String>,
    pub company: Option<String>,
    pub salary_offered: Option<String>,
    pub logo_url: Option<String>,
    pub is_remote: Option<bool>,
    pub job_url: Option<String>,
    pub departments: Option<Vec<String>>,
    pub seniority: Option<String>,
    pub currency: Option<String>,
    pub salary_to: Option<Salary>,
    pub salary_from: Option<Salary>,
    pub skills: Option<Vec<String>>,
    pub industry: Option<String>,
    pub is_agency: bool,
    pub extra: Option<(String, Value)>,
    /// The career site (and company profile) whose job this is: the link `job_companies`
    /// should find.
    pub company_id: Option<String>,
    /// The pay period the salary was drawn for: what `salary_period` should find.
    pub pay: Option<Pay>,
    /// The figures drawn for the pay, also when the posting gives them only in its text.
    pub pay_figures: (Option<f64>, Option<f64>),
}

impl Job {
    /// The UTC calendar day of the posting.
    pub fn post_date(&self) -> NaiveDate {
        Utc.timestamp_millis_opt(self.ts_ms)
            .single()
            .map(|t| t.date_naive())
            .unwrap_or_default()
    }

    /// The handle that identifies "the same job" across postings (jobs carry no id).
    pub fn dedup_key(&self) -> Option<&str> {
        self.job_url.as_deref().or(self.apply_url.as_deref())
    }

    /// Whether the posting carries any salary data at all.
    pub fn has_salary(&self) -> bool {
        self.salary_offered.is_some() || self.salary_from.is_some() || self.salary_to.is_some()
    }

    /// The row exactly as `data.jobs[]` carries it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("Job Type".into(), json!(self.job_type));
        m.insert("Job Title".into(), json!(self.title));
        m.insert("Apply URL".into(), json!(self.apply_url));
        m.insert(
            "Post Date".into(),
            json!(self.post_date().format("%Y-%m-%d").to_string()),
        );
        m.insert("Valid Through".into(), json!(self.valid_through));
        m.insert("City".into(), json!(self.city));
        m.insert("Job Board".into(), json!(self.job_board));
        m.insert("Job Description".into(), json!(self.description));
        m.insert("Country".into(), json!(self.country));
        m.insert("Company Name".into(), json!(self.company));
        m.insert("State".into(), json!(self.state));
        m.insert("Salary Offered".into(), json!(self.salary_offered));
        m.insert("Logo URL".into(), json!(self.logo_url));
        m.insert("Is Remote".into(), json!(self.is_remote));
        m.insert("Job URL".into(), json!(self.job_url));
        m.insert("Department Name".into(), json!(self.departments));
        m.insert("Seniority Level".into(), json!(self.seniority));
        m.insert("Salary Currency".into(), json!(self.currency));
        m.insert(
            "Salary To".into(),
            self.salary_to.map_or(Value::Null, Salary::to_json),
        );
        m.insert(
            "Salary From".into(),
            self.salary_from.map_or(Value::Null, Salary::to_json),
        );
        m.insert("Skills".into(), json!(self.skills));
        if let Some((k, v)) = &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// How many rows one simulated hour of activity creates and changes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Changes {
    pub new: usize,
    pub updated: usize,
}

/// Everything the simulator serves, kept in each API's serving order.
#[derive(Debug)]
pub(crate) struct World {
    /// Sorted by (updated_at asc, id asc): the Jobo feed order.
    pub sites: Vec<Site>,
    /// Sorted by (ts_ms desc, seq desc): the Sentrion search order.
    pub jobs: Vec<Job>,
    next_seq: i64,
    rows: usize,
    rng: ChaCha8Rng,
    employers: Vec<Employer>,
    /// The slugs (and so the website and board domains) sites have: two companies of one name
    /// still have domains of their own.
    slugs: HashSet<String>,
}

/// A company jobs are posted for: a career site as it was when the job was made.
#[derive(Debug, Clone)]
pub(crate) struct Employer {
    site_id: String,
    name: String,
    slug: String,
}

impl Employer {
    fn of(site: &Site) -> Employer {
        Employer {
            site_id: site.id.clone(),
            name: site.name(),
            slug: site.slug.clone(),
        }
    }
}

/// The legal forms a company name may end with, and what postings write instead.
const LEGAL_FORMS: &[&str] = &["Inc.", "GmbH", "AG", "Ltd", "LLC", "SAS", "BV", "Co."];

/// The company name a posting gives, in the variants real postings have: "Acme Labs Inc."
/// as the career site has it, "Acme Labs", "Acme Labs, Inc.", "ACME LABS Corp", "The Acme
/// Labs Company", "Acme Labs LLC".
fn name_variant(rng: &mut ChaCha8Rng, name: &str) -> String {
    let core = LEGAL_FORMS
        .iter()
        .find_map(|form| name.strip_suffix(form).map(str::trim_end))
        .filter(|core| !core.is_empty())
        .unwrap_or(name);
    match rng.random_range(0..20) {
        0..=7 => name.to_string(),
        8..=11 => core.to_string(),
        12..=14 => format!("{core}, Inc."),
        15..=16 => format!("{} Corp", core.to_uppercase()),
        17 => format!("The {core} Company"),
        _ => format!("{core} LLC"),
    }
}

impl World {
    /// Builds the initial data set; `now` is truncated to the hour so two
    /// simulators with one seed started within the same hour hold identical data.
    #[cfg(test)]
    pub fn generate(seed: u64, rows: usize, history_days: u32, now: DateTime<Utc>) -> World {
        Self::generate_sized(seed, rows, rows, history_days, now)
    }

    /// [`World::generate`] with `sites` career sites and `rows` jobs.
    pub fn generate_sized(
        seed: u64,
        sites_n: usize,
        rows: usize,
        history_days: u32,
        now: DateTime<Utc>,
    ) -> World {
        let anchor = now
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sites = Vec::with_capacity(sites_n);
        let mut slugs = HashSet::new();
        for _ in 0..sites_n {
            let disc_off = rng.random_range(3600..=365 * 86_400i64);
            let upd_off = rng.random_range(3600..=disc_off);
            let discovered = anchor - ChronoDuration::seconds(disc_off);
            let updated = anchor - ChronoDuration::seconds(upd_off);
            sites.push(gen_site(&mut rng, discovered, updated, true, &mut slugs));
        }
        let employers: Vec<Employer> = sites.iter().map(Employer::of).collect();
        let mut world = World {
            sites,
            jobs: Vec::with_capacity(rows),
            next_seq: 10_000,
            rows,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_AD7A_11CE_0001),
            employers,
            slugs,
        };
        let anchor_ms = anchor.timestamp_millis();
        for _ in 0..rows {
            let dup = !world.jobs.is_empty() && rng.random_bool(0.03);
            let job = if dup {
                let i = rng.random_range(0..world.jobs.len());
                let mut j = world.jobs[i].clone();
                j.seq = world.next_seq;
                j.ts_ms -= rng.random_range(86_400_000..10 * 86_400_000i64);
                j
            } else {
                let span = i64::from(history_days.max(1)) * 86_400_000;
                let ts = anchor_ms - rng.random_range(0..span);
                gen_job(&mut rng, world.next_seq, ts, &world.employers)
            };
            world.next_seq += 1;
            world.jobs.push(job);
        }
        world.sort();
        world
    }

    fn sort(&mut self) {
        self.sites
            .sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
        self.jobs
            .sort_by_key(|j| std::cmp::Reverse((j.ts_ms, j.seq)));
    }

    /// Applies `hours` of activity, every change stamped `now`, so clients that
    /// use the real clock for `updated_after` see them.
    pub fn advance(&mut self, hours: f64, now: DateTime<Utc>) -> (Changes, Changes) {
        let now = now.with_nanosecond(0).unwrap_or(now);
        let per_hour = (self.rows / 100).max(1) as f64;
        let n = (per_hour * hours).round() as usize;
        let rng = &mut self.rng;

        let mut jobo = Changes::default();
        for _ in 0..n {
            let site = gen_site(rng, now, now, false, &mut self.slugs);
            self.employers.push(Employer::of(&site));
            self.sites.push(site);
            jobo.new += 1;
        }
        for _ in 0..n {
            if self.sites.is_empty() {
                break;
            }
            let i = rng.random_range(0..self.sites.len());
            let s = &mut self.sites[i];
            match rng.random_range(0..3) {
                0 => s.summary = Some(gen_summary(rng, &s.name_base)),
                1 => s.industries = pick_some(rng, INDUSTRIES, 1, 3),
                _ => s.rename = Some(pick(rng, RENAMES)),
            }
            s.updated_at = now;
            jobo.updated += 1;
        }

        let mut sentrion = Changes::default();
        let now_ms = now.timestamp_millis();
        for _ in 0..n {
            let job = gen_job(rng, self.next_seq, now_ms, &self.employers);
            self.next_seq += 1;
            self.jobs.push(job);
            sentrion.new += 1;
        }
        // Reposts: each replaces every earlier posting of the same job (its dedup key). The
        // postings are indexed by key once and the replaced ones dropped at the end, so a
        // repost costs in proportion to its job's postings, not to the world's.
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        let mut keyed = Vec::new();
        for (i, j) in self.jobs.iter().enumerate() {
            if let Some(k) = j.dedup_key() {
                by_key.entry(k.to_string()).or_default().push(i);
                keyed.push(i);
            }
        }
        let mut gone = vec![false; self.jobs.len()];
        let mut live = keyed.len();
        for _ in 0..n {
            if live == 0 {
                break;
            }
            // Uniform over the postings not yet replaced.
            if keyed.len() > 2 * live {
                keyed.retain(|&i| !gone[i]);
            }
            let i = loop {
                let i = keyed[rng.random_range(0..keyed.len())];
                if !gone[i] {
                    break i;
                }
            };
            let old = self.jobs[i].clone();
            let key = old.dedup_key().unwrap_or_default().to_string();
            let postings = by_key.entry(key).or_default();
            for &p in postings.iter() {
                if !std::mem::replace(&mut gone[p], true) {
                    live -= 1;
                }
            }
            postings.push(self.jobs.len());
            keyed.push(self.jobs.len());
            gone.push(false);
            live += 1;
            let mut job = old;
            job.seq = self.next_seq;
            self.next_seq += 1;
            job.ts_ms = now_ms;
            if job.valid_through.is_some() {
                let until = now.date_naive() + ChronoDuration::days(30);
                job.valid_through = Some(until.format("%Y-%m-%d").to_string());
            }
            if let Some(pay) = job
                .pay
                .filter(|_| job.salary_from.is_some() || job.salary_to.is_some())
            {
                job.salary_from = job.salary_from.map(|s| pay.raised(s));
                job.salary_to = job.salary_to.map(|s| pay.raised(s));
                if job.salary_offered.is_some() {
                    job.salary_offered = pay.text(job.salary_from, job.salary_to);
                }
                job.pay_figures = (
                    job.salary_from.map(Salary::value),
                    job.salary_to.map(Salary::value),
                );
            } else {
                let t = job.title.unwrap_or_else(|| "Generalist".into());
                job.title = Some(if t.starts_with("Senior ") {
                    format!("{t} (Reposted)")
                } else {
                    format!("Senior {t}")
                });
            }
            self.jobs.push(job);
            sentrion.updated += 1;
        }
        let mut gone = gone.into_iter();
        self.jobs.retain(|_| !gone.next().unwrap_or(false));
        self.sort();
        (jobo, sentrion)
    }
}

fn gen_summary(rng: &mut ChaCha8Rng, name: &str) -> String {
    let mut s = format!(
        "{name} {} for {}.",
        pick(rng, SUMMARY_WHAT),
        pick(rng, SUMMARY_WHO)
    );
    if rng.random_bool(0.3) {
        s.push_str(&format!(
            " Founded by former operators, the team {} for {} across three continents.",
            pick(rng, SUMMARY_WHAT),
            pick(rng, SUMMARY_WHO)
        ));
    }
    s
}

fn gen_site(
    rng: &mut ChaCha8Rng,
    discovered: DateTime<Utc>,
    updated: DateTime<Utc>,
    allow_null_discovery: bool,
    slugs: &mut HashSet<String>,
) -> Site {
    let id = uuid(rng);
    let name_base = if rng.random_bool(0.08) {
        pick(rng, UNICODE_NAMES).to_string()
    } else {
        let (a, b, c) = (pick(rng, NAME_A), pick(rng, NAME_B), pick(rng, NAME_SUFFIX));
        format!("{a} {b} {c}").trim().to_string()
    };
    let mut slug = slugify(&name_base, &id);
    if !slugs.insert(slug.clone()) {
        slug = format!("{slug}-{}", &id[..4]);
        slugs.insert(slug.clone());
    }
    let ats = pick(rng, ATS).to_string();
    let listing_url = match ats.as_str() {
        "greenhouse" => format!("https://boards.greenhouse.io/{slug}"),
        "lever" => format!("https://jobs.lever.co/{slug}"),
        "workday" => format!("https://{slug}.wd5.myworkdayjobs.com/careers"),
        "ashby" => format!("https://jobs.ashbyhq.com/{slug}"),
        "smartrecruiters" => format!("https://jobs.smartrecruiters.com/{slug}"),
        "bamboohr" => format!("https://{slug}.bamboohr.com/careers"),
        "personio" => format!("https://{slug}.jobs.personio.de"),
        _ => format!("https://careers.{slug}.com"),
    };
    let industries = if rng.random_bool(0.03) {
        Vec::new()
    } else {
        pick_some(rng, INDUSTRIES, 1, 3)
    };
    let categories = pick_some(rng, CATEGORIES, 0, 2);
    let website = maybe(rng, 0.9, |_| format!("https://www.{slug}.com"));
    let logo_url = maybe(rng, 0.8, |_| format!("https://logos.jobo.world/{id}.png"));
    let summary = maybe(rng, 0.85, |r| gen_summary(r, &name_base));
    let linkedin_url = maybe(rng, 0.75, |_| {
        format!("https://www.linkedin.com/company/{slug}")
    });
    let crunchbase_url = maybe(rng, 0.4, |_| {
        format!("https://www.crunchbase.com/organization/{slug}")
    });
    let discovered_at = if allow_null_discovery && rng.random_bool(0.02) {
        None
    } else {
        Some(discovered)
    };
    let has_details = rng.random_bool(0.97);
    let extra = maybe(rng, 0.01, |r| {
        (
            "employee_count_hint".to_string(),
            json!(r.random_range(10..5000)),
        )
    });
    Site {
        id,
        name_base,
        slug,
        rename: None,
        website,
        logo_url,
        summary,
        industries,
        categories,
        linkedin_url,
        crunchbase_url,
        ats,
        listing_url,
        discovered_at,
        updated_at: updated,
        has_details,
        extra,
        company_size: maybe(rng, 0.9, |r| pick(r, SIZES).to_string()),
        country_code: maybe(rng, 0.95, |r| pick(r, COUNTRY_CODES).to_string()),
        funding_stage: maybe(rng, 0.7, |r| pick(r, FUNDING).to_string()),
        company_type: maybe(rng, 0.95, |r| {
            if r.random_bool(0.85) {
                "for_profit".to_string()
            } else {
                "non_profit".to_string()
            }
        }),
        founded_year: maybe(rng, 0.85, |r| r.random_range(1950..=2025i64)),
        is_agency: rng.random_bool(0.1),
    }
}

fn gen_description(rng: &mut ChaCha8Rng, title: &str, company: &str) -> String {
    let mut d = format!("{company} is hiring a {title}.");
    let paragraphs = rng.random_range(2..=5);
    for _ in 0..paragraphs {
        d.push_str("\n\n");
        let sentences = rng.random_range(2..=5);
        for k in 0..sentences {
            if k > 0 {
                d.push(' ');
            }
            d.push_str(pick(rng, DESC_SENTENCES));
        }
    }
    d
}

fn gen_job(rng: &mut ChaCha8Rng, seq: i64, ts_ms: i64, employers: &[Employer]) -> Job {
    let place = &PLACES[rng.random_range(0..PLACES.len())];
    let title = maybe(rng, 0.99, |r| pick(r, TITLES).to_string());
    let employer =
        (!employers.is_empty()).then(|| &employers[rng.random_range(0..employers.len())]);
    let company = match employer {
        Some(e) => maybe(rng, 0.98, |r| name_variant(r, &e.name)),
        // A world without career sites still has jobs, posted by a company it does not know.
        None => maybe(rng, 0.98, |_| "Acme Inc.".to_string()),
    };
    let board = maybe(rng, 0.97, |r| pick(r, ALL_BOARDS).to_string());
    let slug = employer.map_or("company-x", |e| e.slug.as_str());
    let job_url = maybe(rng, 0.88, |_| match board.as_deref() {
        Some("Linkedin") => format!("https://www.linkedin.com/jobs/view/{}", 3_800_000_000 + seq),
        Some("Indeed") => format!("https://www.indeed.com/viewjob?jk={:016x}", seq * 7919),
        Some("Glassdoor") => format!("https://www.glassdoor.com/job-listing/{seq}"),
        Some("ZipRecruiter") => format!("https://www.ziprecruiter.com/c/{slug}/job/{seq}"),
        _ => format!(
            "https://boards.greenhouse.io/{slug}/jobs/{}",
            4_000_000 + seq
        ),
    });
    let apply_p = if job_url.is_some() { 0.8 } else { 0.85 };
    let apply_url = maybe(rng, apply_p, |_| {
        format!("https://careers.{slug}.com/apply/{}", 90_000 + seq)
    });
    let is_remote = maybe(rng, 0.95, |r| r.random_bool(0.25));
    let post = Utc
        .timestamp_millis_opt(ts_ms)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default();
    let valid_through = maybe(rng, 0.7, |_| {
        (post + ChronoDuration::days(30))
            .format("%Y-%m-%d")
            .to_string()
    });
    let industry = maybe(rng, 0.95, |r| pick(r, JOB_INDUSTRIES).to_string());
    let is_agency = industry.as_deref() == Some("Staffing and Recruiting") || rng.random_bool(0.08);
    let mut job = Job {
        seq,
        ts_ms,
        job_type: maybe(rng, 0.95, |r| pick(r, JOB_TYPES).to_string()),
        description: maybe(rng, 0.97, |r| {
            gen_description(
                r,
                title.as_deref().unwrap_or("teammate"),
                company.as_deref().unwrap_or("Our client"),
            )
        }),
        title,
        apply_url,
        valid_through,
        city: maybe(rng, 0.95, |_| place.city.to_string()),
        state: maybe(rng, 0.9, |_| place.state.to_string()),
        country: maybe(rng, 0.97, |r| pick(r, place.countries).to_string()),
        job_board: board,
        company,
        salary_offered: None,
        logo_url: maybe(rng, 0.7, |r| {
            format!(
                "https://media.licdn.com/dms/image/{:08x}/company-logo.png",
                r.random::<u32>()
            )
        }),
        is_remote,
        job_url,
        departments: if rng.random_bool(0.1) {
            None
        } else {
            Some(pick_some(rng, DEPARTMENTS, 0, 2))
        },
        seniority: maybe(rng, 0.9, |r| pick(r, SENIORITY).to_string()),
        currency: None,
        salary_to: None,
        salary_from: None,
        skills: if rng.random_bool(0.1) {
            None
        } else {
            Some(pick_some(rng, SKILLS, 0, 5))
        },
        industry,
        is_agency,
        extra: None,
        company_id: employer.map(|e| e.site_id.clone()),
        pay: None,
        pay_figures: (None, None),
    };
    let drawn = pay::draw(rng, place.currency, place.symbol, place.scale);
    job.salary_from = drawn.from;
    job.salary_to = drawn.to;
    job.currency = drawn.currency;
    job.salary_offered = drawn.text;
    job.pay = drawn.pay;
    job.pay_figures = drawn.figures;
    job.extra = maybe(rng, 0.01, |r| {
        let policy = ["hybrid", "remote-first", "office"][r.random_range(0..3)];
        ("remote_policy".to_string(), json!(policy))
    });
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repost replaces every earlier posting of its job: after hours of activity, one posting
    /// per reposted job, the new one; the jobs nobody reposted are all still there; and the
    /// same seed advances the same way.
    #[test]
    fn an_advance_leaves_one_posting_per_reposted_job() {
        let now = Utc::now();
        let later = (now + ChronoDuration::hours(1)).with_nanosecond(0).unwrap();
        let mut w = World::generate(11, 2000, 30, now);
        let before: Vec<String> = w.jobs.iter().map(|j| j.to_json().to_string()).collect();
        let old_keys: HashSet<String> = w
            .jobs
            .iter()
            .filter_map(|j| j.dedup_key().map(str::to_string))
            .collect();
        let (_, sentrion) = w.advance(40.0, later);
        assert_eq!(sentrion.new, 800);
        assert_eq!(sentrion.updated, 800);
        let fresh = later.timestamp_millis();
        let mut per_key: HashMap<&str, Vec<&Job>> = HashMap::new();
        for j in &w.jobs {
            if let Some(k) = j.dedup_key() {
                per_key.entry(k).or_default().push(j);
            }
        }
        // The jobs of before that were reposted: only their repost is left.
        let reposted: Vec<&Vec<&Job>> = per_key
            .iter()
            .filter(|(k, js)| old_keys.contains(**k) && js.iter().any(|j| j.ts_ms == fresh))
            .map(|(_, js)| js)
            .collect();
        assert!(reposted.len() > 300, "{} jobs reposted", reposted.len());
        for js in reposted {
            assert_eq!(js.len(), 1, "{} postings of a reposted job", js.len());
        }
        // The rest stays as it was.
        let after: HashSet<String> = w.jobs.iter().map(|j| j.to_json().to_string()).collect();
        let kept = before.iter().filter(|j| after.contains(*j)).count();
        assert!(
            kept > before.len() / 2 && kept < before.len(),
            "{kept} kept"
        );
        let mut again = World::generate(11, 2000, 30, now);
        again.advance(40.0, later);
        let a: Vec<Value> = w.jobs.iter().map(Job::to_json).collect();
        let b: Vec<Value> = again.jobs.iter().map(Job::to_json).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn same_seed_same_world() {
        let now = Utc::now();
        let a = World::generate(7, 300, 75, now);
        let b = World::generate(7, 300, 75, now);
        let ja: Vec<Value> = a.sites.iter().map(|s| s.to_json("x")).collect();
        let jb: Vec<Value> = b.sites.iter().map(|s| s.to_json("x")).collect();
        assert_eq!(ja, jb);
        let ja: Vec<Value> = a.jobs.iter().map(Job::to_json).collect();
        let jb: Vec<Value> = b.jobs.iter().map(Job::to_json).collect();
        assert_eq!(ja, jb);
        let c = World::generate(8, 300, 75, now);
        assert_ne!(a.sites[0].id, c.sites[0].id);
    }

    #[test]
    fn variety_is_present() {
        let w = World::generate(42, 2000, 75, Utc::now());
        let jobs: Vec<Value> = w.jobs.iter().map(Job::to_json).collect();
        let has = |f: &dyn Fn(&Value) -> bool| jobs.iter().any(f);
        assert!(has(&|j| j["Country"] == "US"));
        assert!(has(&|j| j["Country"] == "United States"));
        assert!(has(&|j| j["Salary From"].is_i64()));
        assert!(has(&|j| j["Salary From"].is_f64()));
        assert!(has(&|j| j["Salary From"].is_null()));
        assert!(has(&|j| j["Skills"].is_null()));
        assert!(has(&|j| j["Skills"] == json!([])));
        assert!(has(
            &|j| j["Job URL"].is_null() && j["Apply URL"].is_string()
        ));
        assert!(has(&|j| j["Job URL"].is_null() && j["Apply URL"].is_null()));
        assert!(has(&|j| j.get("remote_policy").is_some()));
        let name = |j: &Value| j["Company Name"].as_str().unwrap_or("").to_string();
        assert!(has(&|j| name(j).ends_with(", Inc.")));
        assert!(has(&|j| {
            name(j)
                .strip_suffix(" Corp")
                .is_some_and(|core| core == core.to_uppercase())
        }));
        assert!(has(
            &|j| name(j).starts_with("The ") && name(j).ends_with(" Company")
        ));
        assert!(w.jobs.iter().all(|j| j.company_id.is_some()));
        let sites: Vec<Value> = w.sites.iter().map(|s| s.to_json("x")).collect();
        assert!(sites.iter().any(|s| s.get("employee_count_hint").is_some()));
        assert!(
            sites
                .iter()
                .any(|s| !s["name"].as_str().unwrap_or("").is_ascii())
        );
        assert!(sites.iter().any(|s| s["summary"].is_null()));
    }
}
