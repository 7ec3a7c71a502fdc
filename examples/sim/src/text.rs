//! Prompt text: benign traffic in its variety, and the campaign template
//! families, split into a tuning set (detectors may be tuned on these) and a
//! held-out set (only ever used to measure them).

use rand::Rng;
use rand::seq::SliceRandom;

pub type R = rand_chacha::ChaCha8Rng;

fn pick<'a>(rng: &mut R, xs: &[&'a str]) -> &'a str {
    xs.choose(rng).copied().unwrap_or("")
}

const TOPICS: &[&str] = &[
    "photosynthesis",
    "the French revolution",
    "compound interest",
    "black holes",
    "sourdough baking",
    "the immune system",
    "supply and demand",
    "plate tectonics",
    "jazz harmony",
    "the Roman empire",
    "machine learning",
    "climate change",
    "the stock market",
    "quantum entanglement",
    "marathon training",
    "urban gardening",
    "the printing press",
    "volcanoes",
    "vaccines",
    "the water cycle",
    "impressionism",
    "blockchains",
    "coral reefs",
    "the cold war",
    "renewable energy",
    "sleep hygiene",
    "tax brackets",
    "electric cars",
    "the human genome",
    "ancient Egypt",
    "chess openings",
    "meditation",
    "inflation",
];
const FORMS: &[&str] =
    &["poem", "short story", "limerick", "haiku", "toast", "product description", "tweet", "song verse"];
const CITIES: &[&str] =
    &["Lisbon", "Kyoto", "Mexico City", "Nairobi", "Oslo", "Hanoi", "Buenos Aires", "Prague", "Seoul", "Marrakesh"];
const LANGS: &[&str] = &["Spanish", "German", "Japanese", "Portuguese", "French", "Korean", "Italian", "Swahili"];
const PHRASES: &[&str] = &[
    "where is the train station",
    "thank you for your help",
    "the meeting is moved to Friday",
    "I would like a table for two",
    "please send the invoice",
    "happy birthday, my friend",
];
const SNIPPETS: &[&str] = &[
    "def avg(xs): return sum(xs) / len(xs)",
    "for (let i = 0; i <= arr.length; i++) { total += arr[i]; }",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 1",
    "fn parse(s: &str) -> i32 { s.parse().unwrap() }",
    "if user = None: raise ValueError('missing')",
    "const data = await fetch(url).json();",
];
const MATH: &[&str] = &[
    "solve 3x + 5 = 20",
    "factor x^2 - 5x + 6",
    "find the derivative of x^3 sin x",
    "integrate 2x e^x",
    "compute the area of a circle with radius 7",
    "solve the system x + y = 10, x - y = 4",
    "find the probability of two sixes with two dice",
    "simplify (a^2 b)^3 / a b^2",
];
const REPOS: &[&str] = &[
    "acme/payments-api",
    "orbit/scheduler",
    "lumen/ui-kit",
    "delta/etl-jobs",
    "nova/auth-service",
    "pico/cli-tools",
    "terra/geo-index",
    "quill/docs-site",
    "arc/ml-pipeline",
    "zen/chat-server",
];
const TASKS: &[&str] = &[
    "fix the failing test in the date parser",
    "add pagination to the list endpoint",
    "migrate the config loader from YAML to TOML",
    "remove the N+1 query in the order report",
    "add retry with backoff to the HTTP client",
    "make the cache eviction thread-safe",
    "implement rate limiting middleware",
    "port the shell deploy script to Python",
    "add input validation to the signup form",
    "speed up the CSV import by streaming rows",
];
const QUESTIONS: &[&str] = &[
    "Why does ice float on water?",
    "How many primes are there below 100?",
    "What causes inflation?",
    "Is a hot dog a sandwich?",
    "How do vaccines train the immune system?",
    "What is the time complexity of heapsort?",
    "Why is the sky blue?",
    "How does TCP avoid congestion?",
    "What is the halting problem?",
    "How do bees communicate?",
    "Why do we have leap years?",
];

/// A benign user's opening prompt.
pub fn casual(rng: &mut R) -> String {
    match rng.gen_range(0..9) {
        0 => format!("Write a {} about {}.", pick(rng, FORMS), pick(rng, TOPICS)),
        1 => format!("What is the difference between {} and {}?", pick(rng, TOPICS), pick(rng, TOPICS)),
        2 => format!("Translate '{}' into {}.", pick(rng, PHRASES), pick(rng, LANGS)),
        3 => format!("Help me plan a {}-day trip to {} on a budget.", rng.gen_range(2..10), pick(rng, CITIES)),
        4 => format!("Explain {} like I'm five.", pick(rng, TOPICS)),
        5 => format!("Give me {} ideas for a weekend project involving {}.", rng.gen_range(3..8), pick(rng, TOPICS)),
        6 => pick(rng, QUESTIONS).to_string(),
        7 => format!("Summarise the main arguments about {} in a few bullet points.", pick(rng, TOPICS)),
        _ => format!("I'm writing an essay on {}. Can you suggest an outline?", pick(rng, TOPICS)),
    }
}

/// A benign follow-up turn in a conversation.
pub fn follow_up(rng: &mut R) -> String {
    match rng.gen_range(0..6) {
        0 => "Thanks! Can you make it shorter?".into(),
        1 => format!("What about {}?", pick(rng, TOPICS)),
        2 => "Why is that?".into(),
        3 => "Can you give me an example?".into(),
        4 => format!("Now translate that into {}.", pick(rng, LANGS)),
        _ => "Great, and what are the downsides?".into(),
    }
}

/// A student: often asks for step-by-step explanations, legitimately.
pub fn student(rng: &mut R) -> String {
    let m = pick(rng, MATH);
    match rng.gen_range(0..5) {
        0 => format!("Can you explain step by step how to {m}?"),
        1 => format!("Please {m} and show your work, I have a test tomorrow."),
        2 => format!("Walk me through the reasoning for {}, I don't get it.", pick(rng, TOPICS)),
        3 => format!("My teacher says to think step by step. How do I {m}?"),
        _ => format!("Quick check: {m}. Is the answer what I think?"),
    }
}

/// A developer, including legitimate agentic-tool use.
pub fn developer(rng: &mut R) -> String {
    match rng.gen_range(0..6) {
        0 => format!("Fix the bug in this code:\n{}", pick(rng, SNIPPETS)),
        1 => format!("Write unit tests for this function:\n{}", pick(rng, SNIPPETS)),
        2 => format!(
            "You are a coding assistant with tools read_file, edit_file and run_tests. In {}, {}.",
            pick(rng, REPOS),
            pick(rng, TASKS)
        ),
        3 => format!("How would you {} in a Rust web service?", pick(rng, TASKS)),
        4 => format!("Review this for security problems:\n{}", pick(rng, SNIPPETS)),
        _ => format!("Explain what this does:\n{}", pick(rng, SNIPPETS)),
    }
}

/// The data-labelling customer: one template, high steady volume.
pub fn labelling(rng: &mut R) -> String {
    format!(
        "Classify the sentiment of the following product review as positive, negative or neutral. \
         Answer with one word.\nReview: \"The {} arrived {} and {}.\"",
        pick(rng, &["blender", "jacket", "phone case", "lamp", "backpack", "kettle", "monitor"]),
        pick(rng, &["late", "on time", "early", "damaged", "well packed"]),
        pick(rng, &["works great", "broke after a week", "is fine", "exceeded expectations", "smells odd"]),
    )
}

/// Which set a template family belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Tuning,
    HeldOut,
}

/// A campaign template family: surface variants with slots, and the
/// paraphrase substitutions the `paraphrased` style applies.
pub struct Family {
    pub id: &'static str,
    pub split: Split,
    /// What it harvests, for the truth file.
    pub kind: &'static str,
    templates: &'static [&'static str],
    paraphrases: &'static [(&'static str, &'static [&'static str])],
}

pub const FAMILIES: &[Family] = &[
    Family {
        id: "T1",
        split: Split::Tuning,
        kind: "cot-elicitation",
        templates: &[
            "Solve the following problem. Think step by step and show all of your reasoning before giving the final answer.\n\nProblem: {problem}",
            "Problem: {problem}\n\nWork through this step by step. Show your complete reasoning, do not skip any steps, then give the final answer.",
            "Please solve: {problem}. Explain your full chain of thought in detail before answering.",
        ],
        paraphrases: &[
            ("Solve", &["Work out", "Tackle", "Figure out"]),
            ("step by step", &["one step at a time", "stepwise"]),
            (
                "show all of your reasoning",
                &["lay out your whole line of thought", "write out every part of your thinking"],
            ),
            ("final answer", &["conclusion", "end result"]),
        ],
    },
    Family {
        id: "T2",
        split: Split::Tuning,
        kind: "rubric-grading",
        templates: &[
            "You are an expert grader. Score the response below from 1 to 10 using this rubric: correctness, reasoning quality, clarity. Justify each score.\n\nQuestion: {question}\nResponse: {response}",
            "Evaluate the following answer against the rubric (accuracy, completeness, style) and assign a numeric score on a scale of 1 to 10.\nQuestion: {question}\nAnswer: {response}",
        ],
        paraphrases: &[
            ("expert grader", &["experienced evaluator", "strict marker"]),
            ("Score", &["Rate", "Mark"]),
            ("Justify each score", &["Give reasons for each mark", "Explain every rating"]),
        ],
    },
    Family {
        id: "T3",
        split: Split::Tuning,
        kind: "capability-sweep",
        templates: &[
            "You are an autonomous software engineering agent. Repository: {repo}. Task: {task}. Available tools: read_file, write_file, run_tests, search. Plan the change, then output the complete patch.",
            "Repository {repo}. Objective: {task}. You can call read_file, write_file, run_tests. Produce the full diff and the test output you expect.",
        ],
        paraphrases: &[
            ("autonomous software engineering agent", &["self-directed coding agent", "independent programming agent"]),
            ("Plan the change", &["Outline your approach", "Decide on the edits"]),
            ("complete patch", &["entire diff", "full set of file changes"]),
        ],
    },
    Family {
        id: "T4",
        split: Split::Tuning,
        kind: "reasoning-trace",
        templates: &[
            "Answer the question. First write your reasoning inside <reasoning></reasoning> tags, then the answer inside <answer></answer> tags.\nQuestion: {question}",
            "Question: {question}\nFormat: put your thinking process in <thinking> tags and the final answer in <answer> tags.",
        ],
        paraphrases: &[
            ("Answer the question", &["Respond to the question", "Reply to this"]),
            ("First write", &["Begin by writing", "Start with"]),
        ],
    },
    Family {
        id: "H1",
        split: Split::HeldOut,
        kind: "cot-elicitation",
        templates: &[
            "Before responding, lay out every intermediate deduction you make, numbered, leaving nothing implicit. Then state the result.\nTask: {problem}",
            "Task: {problem}\nNarrate each inference you draw on the way, in order, as a numbered list; only after that give the result.",
        ],
        paraphrases: &[
            ("intermediate deduction", &["inference", "logical move"]),
            ("leaving nothing implicit", &["omitting nothing", "spelling everything out"]),
        ],
    },
    Family {
        id: "H2",
        split: Split::HeldOut,
        kind: "rubric-grading",
        templates: &[
            "Act as a preference judge. Two candidate completions follow. Decide which better satisfies the instruction and justify with a point-by-point comparison, ending with a verdict of A or B.\nInstruction: {question}\nA: {response}\nB: {response2}",
            "Compare completion A and completion B for the instruction below. Which is more helpful and more correct? Give a point-by-point critique, then output A or B.\nInstruction: {question}\nA: {response}\nB: {response2}",
        ],
        paraphrases: &[
            ("preference judge", &["comparison referee", "impartial assessor"]),
            ("point-by-point", &["item-by-item", "criterion-by-criterion"]),
        ],
    },
    Family {
        id: "H3",
        split: Split::HeldOut,
        kind: "capability-sweep",
        templates: &[
            "Environment: sandboxed shell with git, python and pytest. Goal: {task} in project {repo}. Emit tool calls as JSON, one per line, until the tests pass.",
            "Project {repo}, shell access granted. {task}. Respond only with JSON tool invocations (bash, edit, test) until done.",
        ],
        paraphrases: &[
            ("Emit tool calls as JSON", &["Output JSON tool invocations", "Respond with JSON actions"]),
            ("until the tests pass", &["until the suite is green", "until everything passes"]),
        ],
    },
    Family {
        id: "H4",
        split: Split::HeldOut,
        kind: "introspection",
        templates: &[
            "Describe, in detail, the internal deliberation you would go through to answer this, including the options you would reject and why.\n{question}",
            "{question}\nBefore the answer, write out the private considerations you weigh, the alternatives you discard, and your confidence at each stage.",
        ],
        paraphrases: &[
            ("internal deliberation", &["inner weighing", "private back-and-forth"]),
            ("options you would reject", &["paths you would discard", "alternatives you'd rule out"]),
        ],
    },
];

pub fn family(id: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.id == id)
}

impl Family {
    /// A prompt from this family; `paraphrase` applies its substitutions at
    /// random, as a campaign rotating wordings would.
    pub fn prompt(&self, rng: &mut R, paraphrase: bool) -> String {
        let mut t = pick(rng, self.templates).to_string();
        if paraphrase {
            for (from, tos) in self.paraphrases {
                if rng.gen_bool(0.7) {
                    t = t.replace(from, pick(rng, tos));
                }
            }
        }
        t.replace("{problem}", pick(rng, MATH))
            .replace("{question}", pick(rng, QUESTIONS))
            .replace("{response}", &casual(rng))
            .replace("{response2}", &casual(rng))
            .replace("{repo}", pick(rng, REPOS))
            .replace("{task}", pick(rng, TASKS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn families_are_split_and_fill_every_slot() {
        let mut rng = R::seed_from_u64(1);
        assert_eq!(FAMILIES.iter().filter(|f| f.split == Split::Tuning).count(), 4);
        assert_eq!(FAMILIES.iter().filter(|f| f.split == Split::HeldOut).count(), 4);
        for f in FAMILIES {
            for _ in 0..20 {
                let p = f.prompt(&mut rng, true);
                assert!(!p.contains('{'), "{}: {p}", f.id);
            }
        }
    }
}
