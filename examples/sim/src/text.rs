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

/// Prompts thousands of people send word for word.
pub const POPULAR: &[&str] = &[
    "hello",
    "Tell me a joke.",
    "What is the meaning of life?",
    "Write a poem about love.",
    "Can you help me write a cover letter?",
    "What should I cook for dinner tonight?",
    "Explain quantum computing in simple terms.",
    "Write a haiku about autumn.",
    "What are some good books to read?",
    "How do I lose weight fast?",
    "Give me a workout plan for beginners.",
    "What's the weather like on Mars?",
    "Summarize the plot of Hamlet.",
    "How do I center a div in CSS?",
    "Write a birthday message for my mom.",
    "What is the capital of Australia?",
    "Tell me a fun fact.",
    "How do I make a resume?",
    "Explain the theory of relativity.",
    "What is machine learning?",
];

/// One of the popular prompts, the most popular most often (Zipf-like).
pub fn popular(rng: &mut R) -> &'static str {
    let u: f64 = rng.r#gen();
    POPULAR[((POPULAR.len() as f64).powf(u) as usize - 1).min(POPULAR.len() - 1)]
}

/// Question `q` of a class's homework for session `session`: the same for
/// every student of that class and session (digits differ between
/// questions, the wording does not).
pub fn homework(class: u32, session: u32, q: u32) -> String {
    let unit = 1 + (session % 12);
    let k = (class.wrapping_mul(7) + session.wrapping_mul(3) + q) as usize;
    format!("Homework {unit}.{}: {}. Our teacher wants the method, not just the answer.", q + 1, MATH[k % MATH.len()])
}

/// Item `i` of an evaluation organisation's benchmark (the same list every
/// run, sent by each of its accounts).
pub fn benchmark(org: usize, i: usize) -> String {
    format!(
        "[eval {org}-{i:03}] {} Answer in one paragraph.",
        QUESTIONS[(org * 5 + i) % QUESTIONS.len()].replace('?', &format!(" (variant {}) ?", i / QUESTIONS.len()))
    )
}

const CONCEPTS: &[&str] = &[
    "entropy",
    "feedback loops",
    "equilibrium",
    "selection pressure",
    "opportunity cost",
    "resonance",
    "diffusion",
    "phase transitions",
    "network effects",
    "regression to the mean",
    "symmetry breaking",
    "catalysis",
    "game theory",
    "signal and noise",
    "path dependence",
    "emergence",
    "half-life",
    "elasticity",
    "recursion",
    "homeostasis",
    "arbitrage",
    "convection",
    "redundancy",
    "scaling laws",
    "trade-offs",
    "attractors",
    "sampling bias",
    "compounding",
    "bottlenecks",
    "thresholds",
];
const FIELDS: &[&str] = &[
    "biology",
    "economics",
    "chemistry",
    "physics",
    "sociology",
    "ecology",
    "linguistics",
    "computer science",
    "geology",
    "medicine",
    "architecture",
    "music theory",
];
const ASPECTS: &[&str] = &[
    "its history",
    "common misconceptions",
    "how it is measured",
    "real-world examples",
    "the mathematics behind it",
    "open research questions",
];
const PLANGS: &[&str] = &["Python", "Rust", "Go", "TypeScript", "Java", "C#", "Kotlin", "Ruby"];
const FN_TASKS: &[&str] = &[
    "merges overlapping intervals",
    "parses ISO 8601 durations",
    "finds the longest palindromic substring",
    "computes a rolling median",
    "validates an IBAN",
    "deduplicates a list while keeping order",
    "converts Roman numerals to integers",
    "flattens a nested dictionary",
    "schedules tasks with dependencies",
    "implements an LRU cache",
    "tokenizes arithmetic expressions",
    "detects cycles in a directed graph",
    "rate-limits calls with a token bucket",
    "computes the edit distance of two strings",
    "groups anagrams",
    "balances parentheses",
    "serializes a binary tree",
    "finds k nearest points",
];
const PERSONAS: &[&str] = &[
    "a retired sea captain",
    "a nervous first-year teacher",
    "a Victorian naturalist",
    "a sports commentator",
    "a noir detective",
    "a cheerful gardener",
    "a space station engineer",
    "a medieval scribe",
];
const ITEMS: &[&str] = &["apples", "tickets", "notebooks", "tiles", "bus rides", "coffees", "plants", "boxes"];

/// A worksheet-style word problem with fresh numbers.
fn word_problem(rng: &mut R) -> String {
    let (a, b, c) = (rng.gen_range(2..40), rng.gen_range(2..20), rng.gen_range(2..9));
    match rng.gen_range(0..4) {
        0 => {
            format!("A shop sells {} for {a} dollars each and gives {c} free with every {b} bought.", pick(rng, ITEMS))
        }
        1 => format!("A train leaves at {a} km/h and another follows {c} hours later at {} km/h.", a + b),
        2 => format!("A tank holds {} litres, loses {b} litres an hour and is refilled {c} times a day.", a * 10),
        _ => format!("{a} people share {} {} and each gets {c} fewer than the one before.", a * b, pick(rng, ITEMS)),
    }
}

/// How varied benign text is. `Classic`: the small vocabularies the older
/// presets were measured with (every benign prompt is shared by many
/// users). `Diverse`: as in real logs, most benign prompts are unique; the
/// slots of the same phrasings draw on vocabularies of thousands, at the
/// same lengths, so only the listed innocent sharing (popular prompts,
/// classes, evaluation and labelling pipelines) repeats across accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocab {
    Classic,
    Diverse,
}

const ADJECTIVES: &[&str] = &[
    "ancient",
    "tiny",
    "floating",
    "abandoned",
    "urban",
    "arctic",
    "medieval",
    "solar",
    "wild",
    "hidden",
    "coastal",
    "modern",
    "forgotten",
    "electric",
    "desert",
    "rural",
    "frozen",
    "tropical",
    "neon",
    "wooden",
    "volcanic",
    "underground",
    "migrating",
    "Baroque",
    "industrial",
    "alpine",
    "nocturnal",
    "Byzantine",
    "Nordic",
    "mechanical",
    "Andean",
    "digital",
    "feral",
    "Victorian",
    "deep-sea",
    "Saharan",
    "orbital",
    "Celtic",
];
const NOUNS: &[&str] = &[
    "bridges",
    "robots",
    "gardens",
    "libraries",
    "trains",
    "mushrooms",
    "whales",
    "castles",
    "markets",
    "bees",
    "glaciers",
    "lighthouses",
    "bicycles",
    "cathedrals",
    "octopuses",
    "windmills",
    "monasteries",
    "tea houses",
    "orchards",
    "satellites",
    "violins",
    "canals",
    "caves",
    "ferries",
    "bakeries",
    "tattoos",
    "kites",
    "owls",
    "bazaars",
    "telescopes",
    "quilts",
    "ants",
    "submarines",
    "vineyards",
    "mosaics",
    "puppets",
    "rivers",
    "observatories",
    "typewriters",
    "lanterns",
    "salt flats",
    "fjords",
    "beetles",
    "harbours",
    "clocks",
];
const MEASURES: &[&str] = &["area", "perimeter", "volume", "surface area", "diagonal", "height", "angle sum"];
const SHAPES: &[&str] =
    &["triangle", "hexagon", "cylinder", "cone", "trapezoid", "sphere", "prism", "kite", "pyramid", "rhombus"];
const FUNCS: &[&str] = &["sine", "cosine", "x squared", "e to the x", "log x", "the square root of x", "x cubed"];
const VERBS: &[&str] = &["parse", "merge", "filter", "sort", "count", "load", "render", "cache", "split", "sum"];
const THINGS: &[&str] =
    &["orders", "users", "events", "rows", "tokens", "files", "prices", "tags", "sessions", "scores", "logs"];

/// A topic: one of the classic few, or (diverse) one of thousands.
fn subject(rng: &mut R, v: Vocab) -> String {
    if v == Vocab::Classic || rng.gen_bool(0.25) {
        pick(rng, TOPICS).to_string()
    } else {
        format!("{} {}", pick(rng, ADJECTIVES), pick(rng, NOUNS))
    }
}

/// A maths task, as a student would ask it.
fn maths(rng: &mut R, v: Vocab) -> String {
    if v == Vocab::Classic || rng.gen_bool(0.2) {
        return pick(rng, MATH).to_string();
    }
    match rng.gen_range(0..3) {
        0 => format!("find the {} of a {} with side {}", pick(rng, MEASURES), pick(rng, SHAPES), rng.gen_range(2..30)),
        1 => format!("differentiate {} times {}", pick(rng, FUNCS), pick(rng, FUNCS)),
        _ => format!("integrate {} plus {}", pick(rng, FUNCS), pick(rng, FUNCS)),
    }
}

/// A short piece of code to ask about.
fn snippet(rng: &mut R, v: Vocab) -> String {
    if v == Vocab::Classic || rng.gen_bool(0.2) {
        return pick(rng, SNIPPETS).to_string();
    }
    let (verb, thing, other) = (pick(rng, VERBS), pick(rng, THINGS), pick(rng, THINGS));
    match rng.gen_range(0..3) {
        0 => format!("def {verb}_{thing}({other}): return [x for x in {other} if x.{thing}]"),
        1 => format!("function {verb}{}({thing}) {{ return {thing}.map(x => x.{other}); }}", other.to_uppercase()),
        _ => format!("fn {verb}_{thing}({other}: &[Item]) -> usize {{ {other}.iter().filter(|x| x.ok).count() }}"),
    }
}

/// A benign user's opening prompt.
pub fn casual(rng: &mut R, v: Vocab) -> String {
    match rng.gen_range(0..9) {
        0 => format!("Write a {} about {}.", pick(rng, FORMS), subject(rng, v)),
        1 => format!("What is the difference between {} and {}?", subject(rng, v), subject(rng, v)),
        2 if v == Vocab::Diverse => format!(
            "Translate 'the {} are next to the {}' into {}.",
            pick(rng, NOUNS),
            pick(rng, NOUNS),
            pick(rng, LANGS)
        ),
        2 => format!("Translate '{}' into {}.", pick(rng, PHRASES), pick(rng, LANGS)),
        3 => format!("Help me plan a {}-day trip to {} on a budget.", rng.gen_range(2..10), pick(rng, CITIES)),
        4 => format!("Explain {} like I'm five.", subject(rng, v)),
        5 => format!("Give me {} ideas for a weekend project involving {}.", rng.gen_range(3..8), subject(rng, v)),
        6 if v == Vocab::Diverse => format!("How do {} actually work?", subject(rng, v)),
        6 => pick(rng, QUESTIONS).to_string(),
        7 => format!("Summarise the main arguments about {} in a few bullet points.", subject(rng, v)),
        _ => format!("I'm writing an essay on {}. Can you suggest an outline?", subject(rng, v)),
    }
}

/// A benign follow-up turn in a conversation.
pub fn follow_up(rng: &mut R, v: Vocab) -> String {
    match rng.gen_range(0..6) {
        0 => "Thanks! Can you make it shorter?".into(),
        1 => format!("What about {}?", subject(rng, v)),
        2 => "Why is that?".into(),
        3 => "Can you give me an example?".into(),
        4 => format!("Now translate that into {}.", pick(rng, LANGS)),
        _ => "Great, and what are the downsides?".into(),
    }
}

/// A student: often asks for step-by-step explanations, legitimately.
pub fn student(rng: &mut R, v: Vocab) -> String {
    let m = maths(rng, v);
    match rng.gen_range(0..5) {
        0 => format!("Can you explain step by step how to {m}?"),
        1 => format!("Please {m} and show your work, I have a test tomorrow."),
        2 => format!("Walk me through the reasoning for {}, I don't get it.", subject(rng, v)),
        3 => format!("My teacher says to think step by step. How do I {m}?"),
        _ => format!("Quick check: {m}. Is the answer what I think?"),
    }
}

/// A developer, including legitimate agentic-tool use.
pub fn developer(rng: &mut R, v: Vocab) -> String {
    match rng.gen_range(0..6) {
        0 => format!("Fix the bug in this code:\n{}", snippet(rng, v)),
        1 => format!("Write unit tests for this function:\n{}", snippet(rng, v)),
        2 => format!(
            "You are a coding assistant with tools read_file, edit_file and run_tests. In {}, {}.",
            pick(rng, REPOS),
            pick(rng, TASKS)
        ),
        3 => format!("How would you {} in a Rust web service?", pick(rng, TASKS)),
        4 => format!("Review this for security problems:\n{}", snippet(rng, v)),
        _ => format!("Explain what this does:\n{}", snippet(rng, v)),
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
    Family {
        id: "TS1",
        split: Split::Tuning,
        kind: "knowledge-sweep",
        templates: &[
            "Give a thorough explanation of {concept} in {field}, focusing on {aspect}.",
            "What should someone know about {concept} in {field}? Cover {aspect} in detail.",
        ],
        paraphrases: &[
            ("thorough", &["detailed", "complete"]),
            ("Cover", &["Go into", "Walk through"]),
            ("in detail", &["carefully", "at length"]),
        ],
    },
    Family {
        id: "TS2",
        split: Split::Tuning,
        kind: "coding-sweep",
        templates: &[
            "Write a {plang} function that {fn_task}. Include error handling and a short usage example.",
            "Implement {fn_task} in {plang}. Handle the edge cases and show how to call it.",
        ],
        paraphrases: &[
            ("Write a", &["Create a", "Produce a"]),
            ("a short usage example", &["an example call", "a brief demo"]),
            ("Handle the edge cases", &["Cover the corner cases", "Deal with unusual inputs"]),
        ],
    },
    Family {
        id: "HS1",
        split: Split::HeldOut,
        kind: "math-sweep",
        templates: &[
            "{word_problem} Give the answer with a short justification.",
            "Here is a question from my worksheet: {word_problem} What is the result, and why?",
        ],
        paraphrases: &[
            ("short justification", &["brief explanation", "few words of support"]),
            ("from my worksheet", &["I came across", "from a practice set"]),
        ],
    },
    Family {
        id: "HS2",
        split: Split::HeldOut,
        kind: "writing-sweep",
        templates: &[
            "Write a {form} about {topic} in the voice of {persona}, around {n} words.",
            "Compose a {form} on {topic}, as if {persona} wrote it. Keep it near {n} words.",
        ],
        paraphrases: &[
            ("in the voice of", &["as told by", "from the point of view of"]),
            ("around", &["roughly", "about"]),
            ("Keep it near", &["Aim for about", "Stay close to"]),
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
        // The sweep families' slots draw only where present, so the older
        // families (and every preset built on them) stream what they did.
        type Fill = fn(&mut R) -> String;
        let fills: [(&str, Fill); 9] = [
            ("{concept}", |r| pick(r, CONCEPTS).into()),
            ("{field}", |r| pick(r, FIELDS).into()),
            ("{aspect}", |r| pick(r, ASPECTS).into()),
            ("{plang}", |r| pick(r, PLANGS).into()),
            ("{fn_task}", |r| pick(r, FN_TASKS).into()),
            ("{word_problem}", word_problem),
            ("{form}", |r| pick(r, FORMS).into()),
            ("{persona}", |r| pick(r, PERSONAS).into()),
            ("{n}", |r| (50 * r.gen_range(2..12)).to_string()),
        ];
        for (slot, fill) in fills {
            if t.contains(slot) {
                t = t.replace(slot, &fill(rng));
            }
        }
        if t.contains("{topic}") {
            t = t.replace("{topic}", pick(rng, TOPICS));
        }
        t.replace("{problem}", pick(rng, MATH))
            .replace("{question}", pick(rng, QUESTIONS))
            .replace("{response}", &casual(rng, Vocab::Classic))
            .replace("{response2}", &casual(rng, Vocab::Classic))
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
        assert_eq!(FAMILIES.iter().filter(|f| f.split == Split::Tuning).count(), 6);
        assert_eq!(FAMILIES.iter().filter(|f| f.split == Split::HeldOut).count(), 6);
        for f in FAMILIES {
            for _ in 0..20 {
                let p = f.prompt(&mut rng, true);
                assert!(!p.contains('{'), "{}: {p}", f.id);
            }
        }
    }
}
