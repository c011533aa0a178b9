//! Schedule windows: the days and times of day, in a named time zone, when a queue may run.
//!
//! A window runs from `from` to `to` on each of its days; when `to` is not after `from` it
//! crosses midnight (19:00–07:00 on Monday is Monday 19:00 to Tuesday 07:00). Times are civil
//! times in the schedule's zone, so a window follows the zone's daylight-saving changes.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A set of weekdays, Monday = bit 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

impl Days {
    pub const EVERY_DAY: Days = Days(0b111_1111);

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.to_monday_zero_offset()) != 0
    }

    /// Parses `mon-fri`, `sat-sun`, `mon,wed,fri`, `fri-mon` (wrapping), `daily`.
    pub fn parse(text: &str) -> Result<Days, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("daily") || text == "*" {
            return Ok(Days::EVERY_DAY);
        }
        let mut bits = 0u8;
        for item in text.split(',') {
            let item = item.trim();
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (weekday(first)?, weekday(last)?),
                None => (weekday(item)?, weekday(item)?),
            };
            let mut day = first;
            loop {
                bits |= 1 << day.to_monday_zero_offset();
                if day == last {
                    break;
                }
                day = day.next();
            }
        }
        Ok(Days(bits))
    }
}

fn weekday(name: &str) -> Result<Weekday, String> {
    let name = name.trim().to_ascii_lowercase();
    let day = match name.get(..3).unwrap_or_default() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "{name:?} is not a day; use mon, tue, wed, thu, fri, sat, sun, ranges like \
                 mon-fri, lists like mon,wed,fri, or daily"
            ));
        }
    };
    let full = format!("{day:?}").to_ascii_lowercase();
    if full.starts_with(&name) {
        Ok(day)
    } else {
        Err(format!("{name:?} is not a day; use mon, tue, ..., sun"))
    }
}

/// A time of day in minutes since midnight, 0 to 1440 (24:00, only as a window's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    pub const MIDNIGHT: TimeOfDay = TimeOfDay(0);
    pub const END_OF_DAY: TimeOfDay = TimeOfDay(24 * 60);

    /// Parses `HH:MM`, 00:00 to 23:59, and 24:00 when `end_of_day_allowed`.
    pub fn parse(text: &str, end_of_day_allowed: bool) -> Result<TimeOfDay, String> {
        let not_a_time = || {
            format!(
                "{text} is not a time of day; write HH:MM, 00:00 to 23:59{}",
                if end_of_day_allowed {
                    ", or 24:00 for the end of the day"
                } else {
                    ""
                }
            )
        };
        let (hours, minutes) = text.trim().split_once(':').ok_or_else(not_a_time)?;
        if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
            return Err(not_a_time());
        }
        let hours: u16 = hours.parse().map_err(|_| not_a_time())?;
        let minutes: u16 = minutes.parse().map_err(|_| not_a_time())?;
        let time = TimeOfDay(hours * 60 + minutes);
        let valid =
            (hours < 24 && minutes < 60) || (end_of_day_allowed && time == Self::END_OF_DAY);
        if valid { Ok(time) } else { Err(not_a_time()) }
    }

    pub fn hours(self) -> i8 {
        (self.0 / 60) as i8
    }

    pub fn minutes(self) -> i8 {
        (self.0 % 60) as i8
    }
}

/// One window: `from` to `to` on each of `days`, crossing midnight when `to <= from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub days: Days,
    pub from: TimeOfDay,
    pub to: TimeOfDay,
}

/// When a queue may run. No windows: always.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    time_zone: TimeZone,
    windows: Vec<Window>,
}

/// How far ahead a schedule looks for its next change: a week covers every window.
const HORIZON_DAYS: i64 = 8;

impl Schedule {
    /// A schedule with no windows: always inside.
    pub fn always() -> Self {
        Schedule {
            time_zone: TimeZone::UTC,
            windows: Vec::new(),
        }
    }

    pub fn new(time_zone: TimeZone, windows: Vec<Window>) -> Self {
        Schedule { time_zone, windows }
    }

    pub fn is_always(&self) -> bool {
        self.windows.is_empty()
    }

    /// `Ok` inside a window, else why not: "outside window until 19:00" (the next opening,
    /// in the schedule's zone; with its weekday when more than a day away).
    pub fn check(&self, now: Timestamp) -> Result<(), String> {
        if self.is_always() {
            return Ok(());
        }
        let spans = self.merged_spans(now);
        if spans.iter().any(|&(start, end)| start <= now && now < end) {
            return Ok(());
        }
        match spans.iter().find(|&&(start, _)| start > now) {
            Some(&(start, _)) => Err(format!(
                "outside window until {}",
                self.local_time(start, now)
            )),
            None => Err("outside window (no window in the coming week)".to_owned()),
        }
    }

    /// When `check` will next change its answer: the end of the window `now` is in, or the
    /// start of the next one. `None` when it never changes (no windows).
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        if self.is_always() {
            return None;
        }
        let spans = self.merged_spans(now);
        spans.iter().find_map(|&(start, end)| {
            if start > now {
                Some(start)
            } else if now < end {
                Some(end)
            } else {
                None
            }
        })
    }

    /// `at` as a local time in the schedule's zone: "19:00" within a day of `now`, else with
    /// its weekday, "Sat 02:00".
    pub fn local_time(&self, at: Timestamp, now: Timestamp) -> String {
        let local = at.to_zoned(self.time_zone.clone());
        let within_a_day = at.duration_since(now) < jiff::SignedDuration::from_hours(24);
        let format = if within_a_day { "%H:%M" } else { "%a %H:%M" };
        local.strftime(format).to_string()
    }

    /// Every window occurrence from the day before `now` to a week after, as instants,
    /// sorted, overlapping or touching ones merged.
    fn merged_spans(&self, now: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let today = now.to_zoned(self.time_zone.clone()).date();
        let mut spans = Vec::new();
        for offset in -1..=HORIZON_DAYS {
            let Ok(date) = today.checked_add(offset.days()) else {
                continue;
            };
            for window in &self.windows {
                if !window.days.contains(date.weekday()) {
                    continue;
                }
                let end_date = if window.to <= window.from {
                    date.tomorrow()
                } else {
                    Ok(date)
                };
                let (Some(start), Some(end)) = (
                    self.instant(date, window.from),
                    end_date.ok().and_then(|end| self.instant(end, window.to)),
                ) else {
                    continue;
                };
                spans.push((start, end));
            }
        }
        spans.sort();
        let mut merged: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// `time` on `date` in the schedule's zone (24:00 is the next midnight; a time skipped
    /// by a daylight-saving change is taken as the instant after the gap).
    fn instant(&self, date: Date, time: TimeOfDay) -> Option<Timestamp> {
        let (date, time) = if time == TimeOfDay::END_OF_DAY {
            (date.tomorrow().ok()?, TimeOfDay::MIDNIGHT)
        } else {
            (date, time)
        };
        let civil = date.at(time.hours(), time.minutes(), 0, 0);
        self.time_zone
            .to_ambiguous_timestamp(civil)
            .compatible()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nairobi_evenings_and_weekends() -> Schedule {
        Schedule::new(
            TimeZone::get("Africa/Nairobi").unwrap(),
            vec![
                Window {
                    days: Days::parse("mon-fri").unwrap(),
                    from: TimeOfDay::parse("19:00", false).unwrap(),
                    to: TimeOfDay::parse("07:00", true).unwrap(),
                },
                Window {
                    days: Days::parse("sat-sun").unwrap(),
                    from: TimeOfDay::parse("00:00", false).unwrap(),
                    to: TimeOfDay::parse("24:00", true).unwrap(),
                },
            ],
        )
    }

    /// A Nairobi (UTC+3, no daylight saving) local time as an instant. 2026-03-02 is a Monday.
    fn nairobi(local: &str) -> Timestamp {
        let civil: jiff::civil::DateTime = local.parse().unwrap();
        civil
            .to_zoned(TimeZone::get("Africa/Nairobi").unwrap())
            .unwrap()
            .timestamp()
    }

    #[test]
    fn days_parse_ranges_lists_and_wrapping() {
        let weekdays = Days::parse("mon-fri").unwrap();
        assert!(weekdays.contains(Weekday::Monday) && weekdays.contains(Weekday::Friday));
        assert!(!weekdays.contains(Weekday::Saturday));
        let wrapping = Days::parse("fri-mon").unwrap();
        assert!(wrapping.contains(Weekday::Sunday) && wrapping.contains(Weekday::Monday));
        assert!(!wrapping.contains(Weekday::Tuesday));
        let list = Days::parse("Mon, wednesday,fri").unwrap();
        assert!(list.contains(Weekday::Wednesday) && !list.contains(Weekday::Tuesday));
        assert_eq!(Days::parse("daily").unwrap(), Days::EVERY_DAY);
        assert!(
            Days::parse("mon-funday")
                .unwrap_err()
                .contains("\"funday\" is not a day")
        );
        assert!(Days::parse("").is_err());
    }

    #[test]
    fn times_of_day_are_checked() {
        assert_eq!(TimeOfDay::parse("07:30", false).unwrap(), TimeOfDay(450));
        assert_eq!(
            TimeOfDay::parse("24:00", true).unwrap(),
            TimeOfDay::END_OF_DAY
        );
        assert!(
            TimeOfDay::parse("24:00", false)
                .unwrap_err()
                .starts_with("24:00 is not a time of day")
        );
        assert!(
            TimeOfDay::parse("25:00", true)
                .unwrap_err()
                .starts_with("25:00 is not a time of day")
        );
        for bad in ["7", "07:60", "7:5", "ab:cd", "-1:00", "24:01"] {
            assert!(TimeOfDay::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_crossing_midnight_runs_into_the_next_day() {
        let schedule = nairobi_evenings_and_weekends();
        // Monday evening, and Tuesday early morning (Monday's window).
        assert_eq!(schedule.check(nairobi("2026-03-02T19:00")), Ok(()));
        assert_eq!(schedule.check(nairobi("2026-03-03T06:59")), Ok(()));
        assert_eq!(
            schedule.check(nairobi("2026-03-03T07:00")),
            Err("outside window until 19:00".to_owned())
        );
        assert_eq!(
            schedule.check(nairobi("2026-03-02T12:00")),
            Err("outside window until 19:00".to_owned())
        );
        // Monday before dawn: Sunday's all-day window ended at midnight, and Monday's
        // evening window has not begun.
        assert_eq!(
            schedule.check(nairobi("2026-03-02T03:00")),
            Err("outside window until 19:00".to_owned())
        );
    }

    #[test]
    fn weekends_run_all_day_and_join_friday_night() {
        let schedule = nairobi_evenings_and_weekends();
        assert_eq!(schedule.check(nairobi("2026-03-07T12:00")), Ok(()));
        assert_eq!(schedule.check(nairobi("2026-03-08T23:59")), Ok(()));
        // Friday 19:00 runs on without a break until Sunday's end (Monday 00:00).
        assert_eq!(
            schedule.next_change(nairobi("2026-03-06T20:00")),
            Some(nairobi("2026-03-09T00:00"))
        );
    }

    #[test]
    fn next_change_is_the_window_edge() {
        let schedule = nairobi_evenings_and_weekends();
        assert_eq!(
            schedule.next_change(nairobi("2026-03-02T12:00")),
            Some(nairobi("2026-03-02T19:00"))
        );
        assert_eq!(
            schedule.next_change(nairobi("2026-03-02T23:00")),
            Some(nairobi("2026-03-03T07:00"))
        );
        assert_eq!(
            Schedule::always().next_change(nairobi("2026-03-02T23:00")),
            None
        );
    }

    #[test]
    fn a_distant_opening_names_its_day() {
        let schedule = Schedule::new(
            TimeZone::get("Africa/Nairobi").unwrap(),
            vec![Window {
                days: Days::parse("sat").unwrap(),
                from: TimeOfDay::parse("02:00", false).unwrap(),
                to: TimeOfDay::parse("04:00", true).unwrap(),
            }],
        );
        assert_eq!(
            schedule.check(nairobi("2026-03-03T10:00")),
            Err("outside window until Sat 02:00".to_owned())
        );
    }

    #[test]
    fn no_windows_is_always_inside() {
        assert_eq!(Schedule::always().check(Timestamp::UNIX_EPOCH), Ok(()));
    }

    #[test]
    fn windows_follow_daylight_saving_in_their_zone() {
        // Europe/Berlin springs forward on 2026-03-29 (02:00 → 03:00): 22:00–06:00 local on
        // both sides of the change, so the window is one hour shorter in UTC that night.
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let schedule = Schedule::new(
            berlin.clone(),
            vec![Window {
                days: Days::EVERY_DAY,
                from: TimeOfDay::parse("22:00", false).unwrap(),
                to: TimeOfDay::parse("06:00", true).unwrap(),
            }],
        );
        let at = |utc: &str| utc.parse::<Timestamp>().unwrap();
        // 2026-03-29T04:30Z is 06:30 CEST (after the change): outside.
        assert!(schedule.check(at("2026-03-29T04:30:00Z")).is_err());
        // 2026-03-28T04:30Z is 05:30 CET (before the change): inside.
        assert_eq!(schedule.check(at("2026-03-28T04:30:00Z")), Ok(()));
        assert_eq!(
            schedule.next_change(at("2026-03-28T23:00:00Z")),
            Some(at("2026-03-29T04:00:00Z"))
        );
    }
}
