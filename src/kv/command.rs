//! The command table: from a request's arguments to a [`Plan`] of what to do.
//!
//! Planning is pure: it validates arity and options, computes each key's group, and encodes
//! one [`Entry`] per group involved. It never fails: a bad request becomes
//! `Plan::Reply(error)`, and the connection goes on.
//!
//! Invariants:
//! - Every plan that touches keys is a [`Routed`] with one part per group, parts ordered by the
//!   first key of each group in the request, and a [`Combine`] that restores the request's
//!   order.
//! - Expiry options (SET EX/PX, EXPIRE, PEXPIRE) become absolute deadlines computed here,
//!   from the planning node's clock (`Context::now_ms`), and travel in the entry; so does
//!   `now_ms` itself.
//! - Replies planned here are typed [`Value`]s, written in the connection's protocol by the
//!   server; HELLO's protocol switch is a [`SessionOp`], run in request order.
//! - The time in an entry is always this node's clock: an entry that arrives over the network
//!   (`RINGRAFT.PROPOSE` / `RINGRAFT.READ`, sent by a forwarding node) is re-stamped with
//!   `Context::now_ms` before it is proposed here. A group's clock only moves forward, so a
//!   time from the network, if trusted, would expire every key for good; re-stamped, it can
//!   never run ahead of the proposing leader's clock.
//! - A forwarded write (`RINGRAFT.PROPOSE group entry session seq lowest_unanswered`) carries
//!   its place in the forwarding node's client session, so its retries apply at most once
//!   ([`crate::kv::route`]); `RINGRAFT.SESSION group` registers such a session.
//! - Access is checked after the command's name and arity, as Redis does: before
//!   authentication every command but AUTH, HELLO, QUIT and the peer proof is answered
//!   `-NOAUTH`; the internal commands are answered `-NOPERM` on any connection that is not
//!   a proven peer ([`Standing::Peer`]); a read-only user's writes are answered `-NOPERM`.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::kv::combine::Combine;
use crate::kv::hashing::group_of;
use crate::kv::op::{Condition, Entry, ExpireIf, ExpireOp, Expiry, Op, SetOp, TtlForm};
use crate::kv::parse::parse_integer;
use crate::kv::resp::{Protocol, Value};
use crate::kv::route::ReadMode;
use crate::kv::session::{SessionOp, Standing, NOAUTH};
use crate::kv::users::{Access, Password};
use crate::types::{GroupId, NodeId, SessionId, SessionRequest};

/// What planning needs to know besides the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Raft groups of the cluster.
    pub groups: u32,
    /// Wall clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// The client connection's id (CLIENT ID, HELLO).
    pub connection_id: u64,
    /// Who the connection speaks for.
    pub standing: Standing<'a>,
    /// Where entries are encoded: the connection's arena, whose allocation its entries share
    /// ([`Entry::encode_into`]); without one, each entry has a buffer of its own.
    pub entries: Option<&'a RefCell<BytesMut>>,
}

/// Whether a command reads or writes keys (a connection lets commands of one kind overlap,
/// and waits at each change of kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Answered without touching keys (PING, QUIT, AUTH, HELLO, refusals, …): starts whatever
    /// else is in flight, and holds nothing back.
    Immediate,
    /// Reads keys (or INFO); overlaps with other reads.
    Read,
    /// Changes keys (or registers a forwarded client session); overlaps with other writes.
    Write,
}

/// Per-group operations of one command and how to merge their replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    /// Whether the parts are writes (proposed) rather than reads (served in the node's read
    /// mode).
    pub write: bool,
    /// One encoded [`Entry`] per group involved, ordered by each group's first key in the
    /// request.
    pub parts: Vec<(GroupId, Bytes)>,
    /// How the parts' replies, in part order, become the client's reply.
    pub combine: Combine,
}

/// An entry another node forwarded to be tried on this node only (RINGRAFT.PROPOSE /
/// RINGRAFT.READ); a forwarded write carries its place in the forwarding node's client session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Here {
    /// The entry's group (below the cluster's group count).
    pub group: GroupId,
    /// The encoded entry, re-stamped with this node's clock.
    pub entry: Bytes,
    /// `None` for a write (RINGRAFT.PROPOSE); the mode to read in for RINGRAFT.READ.
    pub read: Option<ReadMode>,
    /// The write's place in the forwarding node's client session, if it was sent in one.
    pub session: Option<SessionRequest>,
}

impl Here {
    /// A forwarded write is a [`Kind::Write`], a forwarded read a [`Kind::Read`].
    pub fn kind(&self) -> Kind {
        match self.read {
            None => Kind::Write,
            Some(_) => Kind::Read,
        }
    }
}

/// What to do for one request, as [`plan`] decides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Answer at once (in the connection's protocol).
    Reply(Value),
    /// Answer `+OK` and close the connection.
    Quit,
    /// INFO: the node's view of every group.
    Info,
    /// Entries to propose or read wherever each group is led.
    Routed(Routed),
    /// RINGRAFT.PROPOSE / RINGRAFT.READ from another node: one entry, tried here only.
    Here(Here),
    /// RINGRAFT.SESSION from another node: register a client session of `group` here.
    RegisterHere {
        /// The group to register the session in (below the cluster's group count).
        group: GroupId,
    },
    /// A change of the connection's standing (AUTH, HELLO, the peer proof), answered at once.
    Session(SessionOp),
}

impl Plan {
    /// The plan's [`Kind`]: which of a connection's jobs it may overlap with, and whether a
    /// read-only user may run it (not if it is [`Kind::Write`]).
    pub fn kind(&self) -> Kind {
        match self {
            Plan::Reply(_) | Plan::Quit | Plan::Session(_) => Kind::Immediate,
            Plan::Info => Kind::Read,
            Plan::Routed(routed) => Plan::kind_of(routed),
            Plan::Here(here) => here.kind(),
            Plan::RegisterHere { .. } => Kind::Write,
        }
    }

    /// The [`Kind`] of a routed plan.
    pub fn kind_of(routed: &Routed) -> Kind {
        match routed.write {
            true => Kind::Write,
            false => Kind::Read,
        }
    }
}

type Build = fn(&Context, &[Bytes]) -> Result<Plan, String>;

/// Which connections may run a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Any connection, authenticated or not (Redis's `no-auth` commands).
    Open,
    /// Authenticated connections.
    Users,
    /// Proven kv peers only (forwarding).
    Peers,
}

/// One command: its name, its arity as Redis counts it (the name included; negative: at least
/// that many), who may run it, and its planner.
struct Spec {
    name: &'static str,
    arity: i32,
    gate: Gate,
    build: Build,
}

const fn spec(name: &'static str, arity: i32, build: Build) -> Spec {
    Spec {
        name,
        arity,
        gate: Gate::Users,
        build,
    }
}

const fn open(name: &'static str, arity: i32, build: Build) -> Spec {
    Spec {
        name,
        arity,
        gate: Gate::Open,
        build,
    }
}

const fn internal(name: &'static str, arity: i32, build: Build) -> Spec {
    Spec {
        name,
        arity,
        gate: Gate::Peers,
        build,
    }
}

static COMMANDS: &[Spec] = &[
    spec("PING", -1, ping),
    spec("ECHO", 2, |_, args| {
        Ok(Plan::Reply(Value::Bulk(args[1].clone())))
    }),
    open("QUIT", -1, |_, _| Ok(Plan::Quit)),
    open("AUTH", -2, auth),
    spec("GET", 2, |ctx, args| {
        single(ctx, false, &args[1], Op::Get(&args[1]))
    }),
    spec("SET", -3, set),
    spec("GETSET", 3, |ctx, args| {
        let set = SetOp {
            key: &args[1],
            value: &args[2],
            condition: Condition::Always,
            expiry: Expiry::Never,
            return_old: true,
        };
        single(ctx, true, &args[1], Op::Set(set))
    }),
    spec("DEL", -2, |ctx, args| count_keys(ctx, true, &args[1..])),
    spec("EXISTS", -2, |ctx, args| count_keys(ctx, false, &args[1..])),
    spec("MGET", -2, mget),
    spec("MSET", -3, mset),
    spec("INCR", 2, |ctx, args| incr_by(ctx, &args[1], 1)),
    spec("DECR", 2, |ctx, args| incr_by(ctx, &args[1], -1)),
    spec("INCRBY", 3, |ctx, args| {
        incr_by(ctx, &args[1], integer(&args[2])?)
    }),
    spec("DECRBY", 3, |ctx, args| {
        let delta = integer(&args[2])?;
        incr_by(
            ctx,
            &args[1],
            delta.checked_neg().ok_or("ERR decrement would overflow")?,
        )
    }),
    spec("APPEND", 3, |ctx, args| {
        single(ctx, true, &args[1], Op::Append(&args[1], &args[2]))
    }),
    spec("STRLEN", 2, |ctx, args| {
        single(ctx, false, &args[1], Op::Strlen(&args[1]))
    }),
    spec("DBSIZE", 1, dbsize),
    spec("EXPIRE", -3, |ctx, args| {
        expire(ctx, args, Deadline::Seconds)
    }),
    spec("PEXPIRE", -3, |ctx, args| {
        expire(ctx, args, Deadline::Millis)
    }),
    spec("EXPIREAT", -3, |ctx, args| {
        expire(ctx, args, Deadline::UnixSeconds)
    }),
    spec("PEXPIREAT", -3, |ctx, args| {
        expire(ctx, args, Deadline::UnixMillis)
    }),
    spec("TTL", 2, |ctx, args| ttl(ctx, args, TtlForm::Seconds)),
    spec("PTTL", 2, |ctx, args| ttl(ctx, args, TtlForm::Millis)),
    spec("EXPIRETIME", 2, |ctx, args| {
        ttl(ctx, args, TtlForm::UnixSeconds)
    }),
    spec("PEXPIRETIME", 2, |ctx, args| {
        ttl(ctx, args, TtlForm::UnixMillis)
    }),
    spec("PERSIST", 2, |ctx, args| {
        single(ctx, true, &args[1], Op::Persist(&args[1]))
    }),
    spec("INFO", -1, |_, _| Ok(Plan::Info)),
    open("HELLO", -1, hello),
    spec("CLIENT", -2, client),
    spec("COMMAND", -1, command),
    spec("SELECT", 2, |_, args| match parse_integer(&args[1]) {
        Some(0) => Ok(Plan::Reply(ok())),
        Some(_) => Err("ERR DB index is out of range".into()),
        None => Err("ERR value is not an integer or out of range".into()),
    }),
    spec("CONFIG", -2, config),
    open("RINGRAFT.CHALLENGE", 1, |_, _| {
        Ok(Plan::Session(SessionOp::Challenge))
    }),
    open("RINGRAFT.AUTH", 3, |_, args| {
        let node = parse_integer(&args[1])
            .and_then(|id| u64::try_from(id).ok())
            .ok_or("ERR node id is not an integer or out of range")?;
        Ok(Plan::Session(SessionOp::Prove {
            node: NodeId(node),
            proof: args[2].clone(),
        }))
    }),
    // RINGRAFT.PROPOSE group entry [session seq lowest_unanswered]
    internal("RINGRAFT.PROPOSE", -3, |ctx, args| {
        let session = match args {
            [_, _, _] => None,
            [_, _, _, session, seq, lowest] => Some(session_request(session, seq, lowest)?),
            _ => return Err("ERR wrong number of arguments for 'ringraft.propose' command".into()),
        };
        here(ctx, &args[1], &args[2], None, session)
    }),
    internal("RINGRAFT.SESSION", 2, |ctx, args| {
        Ok(Plan::RegisterHere {
            group: group_number(ctx, &args[1])?,
        })
    }),
    internal("RINGRAFT.READ", 4, |ctx, args| {
        let mode = std::str::from_utf8(&args[2])
            .ok()
            .and_then(ReadMode::from_name)
            .ok_or("ERR unknown read mode")?;
        here(ctx, &args[1], &args[3], Some(mode), None)
    }),
];

/// The names of the commands served, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|spec| spec.name)
}

/// The place in [`names`] of the command named `name` (any case).
pub fn index_of(name: &[u8]) -> Option<usize> {
    COMMANDS
        .iter()
        .position(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Plans the request `args` (at least the command name).
pub fn plan(ctx: &Context, args: &[Bytes]) -> Plan {
    let Some(name) = args.first() else {
        return Plan::Reply(Value::Error("ERR empty command".into()));
    };
    let Some(spec) = index_of(name).map(|index| &COMMANDS[index]) else {
        return Plan::Reply(Value::Error(unknown_command(args)));
    };
    let count = args.len() as i64;
    let arity = i64::from(spec.arity);
    if (arity > 0 && count != arity) || (arity < 0 && count < -arity) {
        return Plan::Reply(Value::Error(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name.to_ascii_lowercase()
        )));
    }
    let refused = |text: &str| Plan::Reply(Value::Error(text.into()));
    match (spec.gate, ctx.standing) {
        (Gate::Open, _) | (_, Standing::Peer) => {}
        (Gate::Peers, _) => {
            return refused(&format!(
                "NOPERM '{}' is internal to the cluster: only a kv node that proved the cluster \
                 secret may send it",
                spec.name.to_ascii_lowercase()
            ))
        }
        (Gate::Users, Standing::Anonymous) => return refused(NOAUTH),
        (Gate::Users, Standing::User { .. }) => {}
    }
    let plan = (spec.build)(ctx, args).unwrap_or_else(|text| refused(&text));
    match ctx.standing {
        Standing::User {
            name,
            access: Access::ReadOnly,
        } if plan.kind() == Kind::Write => refused(&format!(
            "NOPERM User {name} has no permissions to run the '{}' command",
            spec.name.to_ascii_lowercase()
        )),
        _ => plan,
    }
}

fn unknown_command(args: &[Bytes]) -> String {
    let show = |bytes: &Bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with:",
        show(&args[0])
    );
    for arg in args.iter().skip(1).take(8) {
        text.push_str(&format!(" '{}'", show(arg)));
    }
    text
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn integer(text: &[u8]) -> Result<i64, String> {
    parse_integer(text).ok_or_else(|| "ERR value is not an integer or out of range".into())
}

fn entry(ctx: &Context, op: Op<'_>) -> Bytes {
    let entry = Entry {
        now_ms: ctx.now_ms,
        op,
    };
    match ctx.entries {
        Some(arena) => entry.encode_into(&mut arena.borrow_mut()),
        None => entry.encode(),
    }
}

/// A command on one key.
fn single(ctx: &Context, write: bool, key: &[u8], op: Op<'_>) -> Result<Plan, String> {
    Ok(Plan::Routed(Routed {
        write,
        parts: vec![(group_of(key, ctx.groups), entry(ctx, op))],
        combine: Combine::Single,
    }))
}

/// Groups of `keys` in order of first appearance, each with the positions of its keys.
fn split(ctx: &Context, keys: &[Bytes]) -> Vec<(GroupId, Vec<usize>)> {
    let mut groups: Vec<(GroupId, Vec<usize>)> = Vec::new();
    for (position, key) in keys.iter().enumerate() {
        let group = group_of(key, ctx.groups);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, positions)) => positions.push(position),
            None => groups.push((group, vec![position])),
        }
    }
    groups
}

/// DEL (`delete`) or EXISTS of several keys: one op per group, counts summed.
fn count_keys(ctx: &Context, delete: bool, keys: &[Bytes]) -> Result<Plan, String> {
    let parts = split(ctx, keys)
        .into_iter()
        .map(|(group, positions)| {
            let keys = positions.iter().map(|&p| &keys[p][..]).collect();
            let op = if delete {
                Op::Del(keys)
            } else {
                Op::Exists(keys)
            };
            (group, entry(ctx, op))
        })
        .collect();
    Ok(Plan::Routed(Routed {
        write: delete,
        parts,
        combine: Combine::Sum,
    }))
}

fn mget(ctx: &Context, args: &[Bytes]) -> Result<Plan, String> {
    let keys = &args[1..];
    let groups = split(ctx, keys);
    let parts = groups
        .iter()
        .map(|(group, positions)| {
            let keys = positions.iter().map(|&p| &keys[p][..]).collect();
            (*group, entry(ctx, Op::MGet(keys)))
        })
        .collect();
    Ok(Plan::Routed(Routed {
        write: false,
        parts,
        combine: Combine::Gather {
            positions: groups.into_iter().map(|(_, positions)| positions).collect(),
            len: keys.len(),
        },
    }))
}

fn mset(ctx: &Context, args: &[Bytes]) -> Result<Plan, String> {
    if args.len() % 2 == 0 {
        return Err("ERR wrong number of arguments for 'mset' command".into());
    }
    let keys: Vec<Bytes> = args[1..].iter().step_by(2).cloned().collect();
    let parts = split(ctx, &keys)
        .into_iter()
        .map(|(group, positions)| {
            let pairs = positions
                .iter()
                .map(|&p| (&args[1 + 2 * p][..], &args[2 + 2 * p][..]))
                .collect();
            (group, entry(ctx, Op::MSet(pairs)))
        })
        .collect();
    Ok(Plan::Routed(Routed {
        write: true,
        parts,
        combine: Combine::AllOk,
    }))
}

fn incr_by(ctx: &Context, key: &[u8], delta: i64) -> Result<Plan, String> {
    single(ctx, true, key, Op::IncrBy(key, delta))
}

fn dbsize(ctx: &Context, _: &[Bytes]) -> Result<Plan, String> {
    Ok(Plan::Routed(Routed {
        write: false,
        parts: (0..u64::from(ctx.groups))
            .map(|group| (GroupId(group), entry(ctx, Op::DbSize)))
            .collect(),
        combine: Combine::Sum,
    }))
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
fn set(ctx: &Context, args: &[Bytes]) -> Result<Plan, String> {
    let mut set = SetOp {
        key: &args[1],
        value: &args[2],
        condition: Condition::Always,
        expiry: Expiry::Never,
        return_old: false,
    };
    let syntax = || "ERR syntax error".to_string();
    let mut expiry_given = false;
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        let option = option.to_ascii_uppercase();
        match &option[..] {
            b"NX" | b"XX" if set.condition != Condition::Always => return Err(syntax()),
            b"NX" => set.condition = Condition::IfAbsent,
            b"XX" => set.condition = Condition::IfPresent,
            b"GET" => set.return_old = true,
            _ if expiry_given => return Err(syntax()),
            b"KEEPTTL" => {
                set.expiry = Expiry::Keep;
                expiry_given = true;
            }
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => {
                let amount = integer(options.next().ok_or_else(syntax)?)?;
                set.expiry = Expiry::At(deadline(ctx.now_ms, &option, amount)?);
                expiry_given = true;
            }
            _ => return Err(syntax()),
        }
    }
    single(ctx, true, &args[1], Op::Set(set))
}

/// The absolute deadline (ms) of an expiry option.
fn deadline(now_ms: u64, option: &[u8], amount: i64) -> Result<u64, String> {
    let invalid = || "ERR invalid expire time in 'set' command".to_string();
    let amount = u64::try_from(amount)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(invalid)?;
    let at = match option {
        b"EX" => amount
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(now_ms)),
        b"PX" => amount.checked_add(now_ms),
        b"EXAT" => amount.checked_mul(1000),
        _ => Some(amount),
    };
    at.filter(|&at| at < i64::MAX as u64).ok_or_else(invalid)
}

/// How EXPIRE and its variants read their number.
#[derive(Clone, Copy)]
enum Deadline {
    /// EXPIRE: seconds from now.
    Seconds,
    /// PEXPIRE: milliseconds from now.
    Millis,
    /// EXPIREAT: a Unix time in seconds.
    UnixSeconds,
    /// PEXPIREAT: a Unix time in milliseconds.
    UnixMillis,
}

/// EXPIRE key amount [NX|XX|GT|LT]… (and PEXPIRE, EXPIREAT, PEXPIREAT): the deadline becomes
/// absolute here, from this node's clock, as SET EX does. It may be in the past (even
/// negative): the key is then deleted, as in Redis.
fn expire(ctx: &Context, args: &[Bytes], unit: Deadline) -> Result<Plan, String> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        match &option.to_ascii_uppercase()[..] {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return Err(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(&option[..option.len().min(64)])
                ))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if gt && lt {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    let condition = match (nx, xx, gt, lt) {
        (true, ..) => ExpireIf::NoDeadline,
        (_, _, true, _) => ExpireIf::Later,
        (_, true, _, true) => ExpireIf::EarlierDeadline,
        (_, _, _, true) => ExpireIf::Earlier,
        (_, true, ..) => ExpireIf::HasDeadline,
        _ => ExpireIf::Always,
    };
    let amount = integer(&args[2])?;
    let invalid = || {
        format!(
            "ERR invalid expire time in '{}' command",
            String::from_utf8_lossy(&args[0]).to_ascii_lowercase()
        )
    };
    let now = ctx.now_ms.min(i64::MAX as u64) as i64;
    let at_ms = match unit {
        Deadline::Seconds => amount.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
        Deadline::Millis => amount.checked_add(now),
        Deadline::UnixSeconds => amount.checked_mul(1000),
        Deadline::UnixMillis => Some(amount),
    }
    .ok_or_else(invalid)?;
    let op = Op::Expire(ExpireOp {
        key: &args[1],
        at_ms,
        condition,
    });
    single(ctx, true, &args[1], op)
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME key: a read.
fn ttl(ctx: &Context, args: &[Bytes], form: TtlForm) -> Result<Plan, String> {
    single(ctx, false, &args[1], Op::Ttl(&args[1], form))
}

fn ping(_: &Context, args: &[Bytes]) -> Result<Plan, String> {
    match args {
        [_] => Ok(Plan::Reply(Value::Simple("PONG".into()))),
        [_, message] => Ok(Plan::Reply(Value::Bulk(message.clone()))),
        _ => Err("ERR wrong number of arguments for 'ping' command".into()),
    }
}

/// AUTH [user] password.
fn auth(_: &Context, args: &[Bytes]) -> Result<Plan, String> {
    let (user, password) = match args {
        [_, password] => (None, password),
        [_, user, password] => (Some(user.clone()), password),
        _ => return Err("ERR syntax error".into()),
    };
    Ok(Plan::Session(SessionOp::Auth {
        user,
        password: Password(password.clone()),
    }))
}

/// HELLO [2|3 [AUTH user pass] [SETNAME name]].
fn hello(ctx: &Context, args: &[Bytes]) -> Result<Plan, String> {
    let protocol = match args.get(1).map(|version| parse_integer(version)) {
        None => None,
        Some(Some(version)) => Some(
            Protocol::from_version(version)
                .ok_or("NOPROTO sorry, this protocol version is not supported")?,
        ),
        Some(None) => return Err("ERR Protocol version is not an integer or out of range".into()),
    };
    let mut login = None;
    let mut options = args.iter().skip(2);
    while let Some(option) = options.next() {
        let upper = option.to_ascii_uppercase();
        match (&upper[..], options.len()) {
            (b"AUTH", 2..) => {
                let user = options.next().cloned().unwrap_or_default();
                let password = options.next().cloned().unwrap_or_default();
                login = Some((user, Password(password)));
            }
            (b"SETNAME", 1..) => {
                options.next();
            }
            _ => {
                return Err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&option[..option.len().min(64)])
                ))
            }
        }
    }
    Ok(Plan::Session(SessionOp::Hello {
        login,
        protocol,
        connection_id: ctx.connection_id,
    }))
}

/// CLIENT SETNAME/SETINFO (accepted and ignored), GETNAME, ID.
fn client(ctx: &Context, args: &[Bytes]) -> Result<Plan, String> {
    let reply = match &args[1].to_ascii_uppercase()[..] {
        b"SETNAME" | b"SETINFO" => ok(),
        b"GETNAME" => Value::Nil,
        b"ID" => Value::Integer(ctx.connection_id as i64),
        _ => return Err("ERR unknown subcommand for 'client'".into()),
    };
    Ok(Plan::Reply(reply))
}

/// COMMAND, COMMAND COUNT, COMMAND DOCS/INFO (no documentation is served; DOCS answers a
/// map, as in Redis).
fn command(_: &Context, args: &[Bytes]) -> Result<Plan, String> {
    let sub = args.get(1).map(|sub| sub.to_ascii_uppercase());
    let reply = match sub.as_deref() {
        None | Some(b"INFO") => Value::Array(vec![]),
        Some(b"DOCS") => Value::Map(vec![]),
        Some(b"COUNT") => Value::Integer(COMMANDS.len() as i64),
        Some(_) => return Err("ERR unknown subcommand for 'command'".into()),
    };
    Ok(Plan::Reply(reply))
}

/// CONFIG GET name...: the few settings clients ask about (`*` lists them all), as a map.
fn config(_: &Context, args: &[Bytes]) -> Result<Plan, String> {
    const SETTINGS: [(&str, &str); 3] = [("save", ""), ("appendonly", "yes"), ("databases", "1")];
    if !args[1].eq_ignore_ascii_case(b"GET") || args.len() < 3 {
        return Err("ERR only CONFIG GET name is supported".into());
    }
    let mut pairs = Vec::new();
    for (name, value) in SETTINGS {
        if args[2..]
            .iter()
            .any(|pattern| &pattern[..] == b"*" || pattern.eq_ignore_ascii_case(name.as_bytes()))
        {
            pairs.push((Value::text(name), Value::text(value)));
        }
    }
    Ok(Plan::Reply(Value::Map(pairs)))
}

fn here(
    ctx: &Context,
    group: &[u8],
    entry: &Bytes,
    read: Option<ReadMode>,
    session: Option<SessionRequest>,
) -> Result<Plan, String> {
    let group = group_number(ctx, group)?;
    let mut decoded = Entry::decode(entry).map_err(|error| format!("ERR {error}"))?;
    decoded.now_ms = ctx.now_ms;
    Ok(Plan::Here(Here {
        group,
        entry: decoded.encode(),
        read,
        session,
    }))
}

fn group_number(ctx: &Context, group: &[u8]) -> Result<GroupId, String> {
    parse_integer(group)
        .and_then(|g| u64::try_from(g).ok())
        .filter(|&g| g < u64::from(ctx.groups))
        .map(GroupId)
        .ok_or_else(|| "ERR no such group".into())
}

/// The session fields of a forwarded write (decimal numbers; at most `seq` unanswered).
fn session_request(session: &[u8], seq: &[u8], lowest: &[u8]) -> Result<SessionRequest, String> {
    let number = |text: &[u8]| parse_integer(text).and_then(|n| u64::try_from(n).ok());
    let (Some(session), Some(seq), Some(lowest)) = (number(session), number(seq), number(lowest))
    else {
        return Err("ERR session fields are not integers or out of range".into());
    };
    SessionRequest::new(SessionId(session), seq, lowest)
        .ok_or_else(|| "ERR the lowest unanswered request is above the request".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context = Context {
        groups: 4,
        now_ms: 1_000_000,
        connection_id: 7,
        standing: Standing::DEFAULT,
        entries: None,
    };

    const PEER: Context = Context {
        standing: Standing::Peer,
        ..CTX
    };

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn reply(words: &[&str]) -> String {
        reply_in(&CTX, words)
    }

    fn reply_in(ctx: &Context, words: &[&str]) -> String {
        match plan(ctx, &args(words)) {
            Plan::Reply(value) => String::from_utf8_lossy(&value.encode()).into_owned(),
            other => panic!("{words:?} planned {other:?}"),
        }
    }

    fn routed(words: &[&str]) -> Routed {
        match plan(&CTX, &args(words)) {
            Plan::Routed(routed) => routed,
            other => panic!("{words:?} planned {other:?}"),
        }
    }

    /// Issue 13, finding 6: whatever time a forwarded entry carries, the plan proposes it with
    /// this node's clock; the operation is kept as sent, and bytes that are no entry are refused.
    #[test]
    fn forwarded_entries_are_restamped_with_this_nodes_clock() {
        for (stamped, read) in [
            (u64::MAX, None),
            (CTX.now_ms - 5_000, Some(ReadMode::Lease)),
        ] {
            let op = match read {
                None => Op::Del(vec![b"k"]),
                Some(_) => Op::Get(b"k"),
            };
            let sent = Entry {
                now_ms: stamped,
                op: op.clone(),
            }
            .encode();
            let mut request = match read {
                None => args(&["RINGRAFT.PROPOSE", "2"]),
                Some(mode) => args(&["RINGRAFT.READ", "2", mode.name()]),
            };
            request.push(sent);
            let Plan::Here(Here { group, entry, .. }) = plan(&PEER, &request) else {
                panic!("{request:?} was not planned here");
            };
            assert_eq!(group, GroupId(2));
            assert_eq!(
                Entry::decode(&entry).unwrap(),
                Entry {
                    now_ms: CTX.now_ms,
                    op
                }
            );
        }
        assert_eq!(
            reply_in(&PEER, &["RINGRAFT.PROPOSE", "0", "not an entry"]),
            "-ERR malformed kv entry\r\n"
        );
    }

    #[test]
    fn forwarded_writes_carry_their_session_and_sessions_register_here() {
        let entry = Entry {
            now_ms: 1,
            op: Op::IncrBy(b"k", 1),
        }
        .encode();
        let mut request = args(&["RINGRAFT.PROPOSE", "1"]);
        request.push(entry);
        request.extend(args(&["12", "5", "3"]));
        let Plan::Here(Here { group, session, .. }) = plan(&PEER, &request) else {
            panic!("{request:?} was not planned here");
        };
        assert_eq!(group, GroupId(1));
        assert_eq!(session, SessionRequest::new(SessionId(12), 5, 3));
        request[5] = Bytes::from_static(b"6");
        assert_eq!(
            plan(&PEER, &request),
            Plan::Reply(Value::Error(
                "ERR the lowest unanswered request is above the request".into()
            ))
        );
        request.pop();
        assert!(matches!(plan(&PEER, &request), Plan::Reply(_)));
        assert_eq!(
            plan(&PEER, &args(&["RINGRAFT.SESSION", "3"])),
            Plan::RegisterHere { group: GroupId(3) }
        );
        assert!(reply_in(&CTX, &["RINGRAFT.SESSION", "3"]).starts_with("-NOPERM"));
        assert_eq!(
            reply_in(&PEER, &["RINGRAFT.SESSION", "4"]),
            "-ERR no such group\r\n"
        );
    }

    fn ops(routed: &Routed) -> Vec<(GroupId, Entry<'_>)> {
        routed
            .parts
            .iter()
            .map(|(group, bytes)| (*group, Entry::decode(bytes).unwrap()))
            .collect()
    }

    #[test]
    fn immediate_commands_and_errors() {
        assert_eq!(reply(&["ping"]), "+PONG\r\n");
        assert_eq!(reply(&["PING", "hi"]), "$2\r\nhi\r\n");
        assert_eq!(reply(&["echo", "x"]), "$1\r\nx\r\n");
        assert_eq!(
            reply(&["get"]),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            reply(&["flushall", "a"]),
            "-ERR unknown command 'flushall', with args beginning with: 'a'\r\n"
        );
        assert_eq!(reply(&["select", "0"]), "+OK\r\n");
        assert!(reply(&["select", "1"]).starts_with("-ERR DB index"));
        assert_eq!(reply(&["client", "setname", "x"]), "+OK\r\n");
        assert_eq!(reply(&["client", "id"]), ":7\r\n");
        assert!(reply(&["hello", "4"]).starts_with("-NOPROTO"));
        assert!(reply(&["hello", "1"]).starts_with("-NOPROTO"));
        assert!(reply(&["hello", "x"]).starts_with("-ERR Protocol version"));
        assert_eq!(reply(&["command", "docs"]), "*0\r\n");
        assert_eq!(
            reply(&["config", "get", "appendonly"]),
            "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
        );
        assert_eq!(
            reply(&["mset", "a", "1", "b"]),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert!(reply(&["incrby", "k", "1.5"]).starts_with("-ERR value is not an integer"));
        assert!(reply(&["decrby", "k", &i64::MIN.to_string()]).starts_with("-ERR decrement"));
        assert!(reply_in(&PEER, &["ringraft.propose", "4", "x"]).starts_with("-ERR no such group"));
        assert_eq!(plan(&CTX, &args(&["QUIT"])), Plan::Quit);
        assert_eq!(plan(&CTX, &args(&["info", "all"])), Plan::Info);
    }

    /// Immediate replies take the RESP3 types Redis gives them.
    #[test]
    fn immediate_replies_are_typed_for_resp3() {
        let resp3 = |words: &[&str]| match plan(&CTX, &args(words)) {
            Plan::Reply(value) => {
                String::from_utf8_lossy(&value.render(Protocol::Resp3)).into_owned()
            }
            other => panic!("{words:?} planned {other:?}"),
        };
        assert_eq!(resp3(&["ping"]), "+PONG\r\n");
        assert_eq!(resp3(&["client", "getname"]), "_\r\n");
        assert_eq!(resp3(&["command", "docs"]), "%0\r\n");
        assert_eq!(resp3(&["command"]), "*0\r\n");
        assert_eq!(
            resp3(&["config", "get", "databases", "save"]),
            "%2\r\n$4\r\nsave\r\n$0\r\n\r\n$9\r\ndatabases\r\n$1\r\n1\r\n"
        );
    }

    fn session_op(ctx: &Context, words: &[&str]) -> SessionOp {
        match plan(ctx, &args(words)) {
            Plan::Session(op) => op,
            other => panic!("{words:?} planned {other:?}"),
        }
    }

    #[test]
    fn hello_and_auth_are_planned_as_session_changes() {
        for (words, protocol) in [
            (&["hello"][..], None),
            (&["HELLO", "3"], Some(Protocol::Resp3)),
            (&["hello", "2", "SETNAME", "x"], Some(Protocol::Resp2)),
        ] {
            assert_eq!(
                session_op(&CTX, words),
                SessionOp::Hello {
                    login: None,
                    protocol,
                    connection_id: 7
                },
                "{words:?}"
            );
        }
        let password = |text: &str| Password(Bytes::copy_from_slice(text.as_bytes()));
        let anonymous = Context {
            standing: Standing::Anonymous,
            ..CTX
        };
        let SessionOp::Hello {
            login, protocol, ..
        } = session_op(
            &anonymous,
            &["HELLO", "3", "setname", "n", "auth", "u", "p"],
        )
        else {
            panic!("HELLO 3 AUTH")
        };
        assert_eq!(login, Some((Bytes::from_static(b"u"), password("p"))));
        assert_eq!(protocol, Some(Protocol::Resp3));
        assert_eq!(
            reply(&["hello", "2", "auth", "u"]),
            "-ERR Syntax error in HELLO option 'auth'\r\n"
        );
        assert_eq!(
            session_op(&anonymous, &["auth", "p"]),
            SessionOp::Auth {
                user: None,
                password: password("p")
            }
        );
        assert_eq!(
            session_op(&anonymous, &["AUTH", "u", "p"]),
            SessionOp::Auth {
                user: Some(Bytes::from_static(b"u")),
                password: password("p")
            }
        );
        assert_eq!(reply(&["auth", "u", "p", "x"]), "-ERR syntax error\r\n");
        assert_eq!(
            session_op(&anonymous, &["ringraft.challenge"]),
            SessionOp::Challenge
        );
        assert_eq!(
            session_op(&anonymous, &["RINGRAFT.AUTH", "2", "proof"]),
            SessionOp::Prove {
                node: NodeId(2),
                proof: Bytes::from_static(b"proof")
            }
        );
        assert!(reply(&["ringraft.auth", "-1", "p"]).starts_with("-ERR node id"));
    }

    #[test]
    fn access_is_checked_by_standing_after_name_and_arity() {
        let anonymous = Context {
            standing: Standing::Anonymous,
            ..CTX
        };
        for words in [
            &["PING"][..],
            &["get", "k"],
            &["set", "k", "v", "bogus"],
            &["info"],
        ] {
            assert_eq!(
                reply_in(&anonymous, words),
                format!("-{NOAUTH}\r\n"),
                "{words:?}"
            );
        }
        assert!(reply_in(&anonymous, &["get"]).starts_with("-ERR wrong number"));
        assert!(reply_in(&anonymous, &["nosuch"]).starts_with("-ERR unknown command"));
        assert_eq!(plan(&anonymous, &args(&["quit"])), Plan::Quit);
        let reader = Context {
            standing: Standing::User {
                name: "reader",
                access: Access::ReadOnly,
            },
            ..CTX
        };
        for words in [
            &["set", "k", "v"][..],
            &["mset", "a", "1"],
            &["del", "k"],
            &["incr", "k"],
            &["append", "k", "v"],
            &["getset", "k", "v"],
            &["expire", "k", "1"],
            &["persist", "k"],
        ] {
            let refused = reply_in(&reader, words);
            let expected = format!(
                "-NOPERM User reader has no permissions to run the '{}' command\r\n",
                words[0]
            );
            assert_eq!(refused, expected);
        }
        for words in [
            &["get", "k"][..],
            &["mget", "a", "b"],
            &["exists", "a"],
            &["dbsize"],
        ] {
            assert!(
                matches!(plan(&reader, &args(words)), Plan::Routed(_)),
                "{words:?}"
            );
        }
        assert_eq!(reply_in(&reader, &["ping"]), "+PONG\r\n");
        for standing in [Standing::Anonymous, Standing::DEFAULT, reader.standing] {
            let ctx = Context { standing, ..CTX };
            for words in [
                &["RINGRAFT.PROPOSE", "0", "x"][..],
                &["ringraft.read", "0", "lease", "x"],
            ] {
                let refused = reply_in(&ctx, words);
                assert!(
                    refused.starts_with(&format!(
                        "-NOPERM '{}' is internal",
                        words[0].to_ascii_lowercase()
                    )),
                    "{standing:?} {words:?}: {refused}"
                );
            }
        }
        assert!(matches!(
            plan(&PEER, &args(&["set", "k", "v"])),
            Plan::Routed(_)
        ));
    }

    #[test]
    fn set_options_become_absolute_deadlines() {
        let cases = [
            (
                vec!["set", "k", "v", "EX", "10"],
                Expiry::At(1_010_000),
                Condition::Always,
                false,
            ),
            (
                vec!["set", "k", "v", "px", "5", "nx"],
                Expiry::At(1_000_005),
                Condition::IfAbsent,
                false,
            ),
            (
                vec!["set", "k", "v", "xx", "get", "exat", "7"],
                Expiry::At(7_000),
                Condition::IfPresent,
                true,
            ),
            (
                vec!["set", "k", "v", "pxat", "9", "get"],
                Expiry::At(9),
                Condition::Always,
                true,
            ),
            (
                vec!["set", "k", "v", "keepttl"],
                Expiry::Keep,
                Condition::Always,
                false,
            ),
        ];
        for (words, expiry, condition, return_old) in cases {
            let routed = routed(&words);
            let [(group, entry)] = &ops(&routed)[..] else {
                panic!("{words:?}")
            };
            assert_eq!(*group, group_of(b"k", 4));
            assert_eq!(entry.now_ms, CTX.now_ms);
            let Op::Set(set) = &entry.op else {
                panic!("{words:?}")
            };
            assert_eq!(
                (set.expiry, set.condition, set.return_old),
                (expiry, condition, return_old)
            );
        }
        for bad in [
            vec!["set", "k", "v", "nx", "xx"],
            vec!["set", "k", "v", "ex", "1", "px", "1"],
            vec!["set", "k", "v", "ex"],
            vec!["set", "k", "v", "bogus"],
        ] {
            assert_eq!(reply(&bad), "-ERR syntax error\r\n", "{bad:?}");
        }
        for bad in [
            ["set", "k", "v", "ex", "0"],
            ["set", "k", "v", "px", "-1"],
            ["set", "k", "v", "ex", "9223372036854775807"],
        ] {
            assert!(
                reply(&bad).starts_with("-ERR invalid expire time"),
                "{bad:?}"
            );
        }
        assert!(reply(&["set", "k", "v", "ex", "x"]).starts_with("-ERR value is not an integer"));
    }

    #[test]
    fn expire_options_become_a_condition_and_an_absolute_deadline() {
        let cases = [
            (vec!["expire", "k", "10"], 1_010_000, ExpireIf::Always),
            (
                vec!["PEXPIRE", "k", "5", "nx"],
                1_000_005,
                ExpireIf::NoDeadline,
            ),
            (
                vec!["expire", "k", "-3", "XX"],
                997_000,
                ExpireIf::HasDeadline,
            ),
            (
                vec!["expire", "k", "0", "gt", "xx"],
                1_000_000,
                ExpireIf::Later,
            ),
            (
                vec!["pexpire", "k", "1", "lt"],
                1_000_001,
                ExpireIf::Earlier,
            ),
            (
                vec!["expire", "k", "1", "xx", "lt"],
                1_001_000,
                ExpireIf::EarlierDeadline,
            ),
            (vec!["expireat", "k", "7"], 7_000, ExpireIf::Always),
            (vec!["pexpireat", "k", "-9"], -9, ExpireIf::Always),
        ];
        for (words, at_ms, condition) in cases {
            let routed = routed(&words);
            assert!(routed.write, "{words:?}");
            let [(group, entry)] = &ops(&routed)[..] else {
                panic!("{words:?}")
            };
            assert_eq!(*group, group_of(b"k", 4));
            let expected = Op::Expire(ExpireOp {
                key: b"k",
                at_ms,
                condition,
            });
            assert_eq!(entry.op, expected, "{words:?}");
        }
        for (words, error) in [
            (
                &["expire", "k", "1", "nx", "xx"][..],
                "-ERR NX and XX, GT or LT",
            ),
            (
                &["expire", "k", "1", "gt", "nx"],
                "-ERR NX and XX, GT or LT",
            ),
            (&["expire", "k", "1", "gt", "lt"], "-ERR GT and LT options"),
            (
                &["expire", "k", "1", "soon"],
                "-ERR Unsupported option soon",
            ),
            (&["expire", "k", "x"], "-ERR value is not an integer"),
            (
                &["expire", "k"],
                "-ERR wrong number of arguments for 'expire'",
            ),
            (
                &["expire", "k", "9223372036854775"],
                "-ERR invalid expire time in 'expire' command",
            ),
            (
                &["PEXPIRE", "k", "9223372036854775807"],
                "-ERR invalid expire time in 'pexpire' command",
            ),
            (
                &["ttl", "k", "x"],
                "-ERR wrong number of arguments for 'ttl'",
            ),
        ] {
            assert!(
                reply(words).starts_with(error),
                "{words:?}: {}",
                reply(words)
            );
        }
        for (words, op) in [
            (&["ttl", "k"][..], Op::Ttl(b"k", TtlForm::Seconds)),
            (&["pttl", "k"], Op::Ttl(b"k", TtlForm::Millis)),
            (&["expiretime", "k"], Op::Ttl(b"k", TtlForm::UnixSeconds)),
            (&["PEXPIRETIME", "k"], Op::Ttl(b"k", TtlForm::UnixMillis)),
            (&["persist", "k"], Op::Persist(b"k")),
        ] {
            let routed = routed(words);
            assert_eq!(routed.write, words[0] == "persist");
            assert_eq!(ops(&routed)[0].1.op, op);
        }
    }

    #[test]
    fn multi_key_commands_split_by_group_and_gather_in_order() {
        let keys = ["a", "b", "c", "d", "e", "f", "a"];
        let mut words = vec!["mget"];
        words.extend(keys);
        let mget = routed(&words);
        let Combine::Gather { positions, len } = &mget.combine else {
            panic!()
        };
        assert_eq!(*len, keys.len());
        let mut seen = Vec::new();
        for ((group, entry), positions) in ops(&mget).iter().zip(positions) {
            let Op::MGet(list) = &entry.op else { panic!() };
            assert_eq!(list.len(), positions.len());
            for (key, &position) in list.iter().zip(positions) {
                assert_eq!(*key, keys[position].as_bytes());
                assert_eq!(group_of(key, 4), *group);
                seen.push(position);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..keys.len()).collect::<Vec<_>>());
        let mset = routed_pairs(&["mset", "{t}a", "1", "{t}b", "2"]);
        assert_eq!(mset.len(), 1, "hash-tagged keys share one group: {mset:?}");
        assert_eq!(routed(&["dbsize"]).parts.len(), 4);
        assert!(routed(&["del", "a", "b"]).write);
        assert!(!routed(&["exists", "a"]).write);
    }

    fn routed_pairs(words: &[&str]) -> Vec<GroupId> {
        routed(words)
            .parts
            .iter()
            .map(|(group, _)| *group)
            .collect()
    }
}
