//! Art. 15's clocks: a processor files within 30 working days of storing the face data of
//! 100,000 people, files a material change within 30 working days of it, and deregisters within
//! 30 working days of stopping. Working days are weekdays, less the public holidays and plus the
//! weekend days that China's official calendar makes working days, as a configured [`Calendar`]
//! lists them. The date arithmetic is the `time` crate's.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Weekday};

use super::{check_text, from_json, parse_date_of};
use crate::error::Error;

/// The count of distinct persons whose face data, once stored, must be filed (Art. 15).
pub const DEFAULT_FILING_THRESHOLD: u64 = 100_000;
/// Working days Art. 15 allows for each filing.
pub const FILING_WORKING_DAYS: u32 = 30;
/// The most days a calendar may list: ample for decades of holidays.
pub const MAX_CALENDAR_DAYS: usize = 2000;

/// The public holidays and make-up working days that move the working week. The vault has none
/// built in: the official calendar is published each year, and the device's owner loads it
/// (`filing calendar`). Beyond the last listed year, only weekends are counted as days off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<Date>,
    workdays: BTreeSet<Date>,
    source: String,
}

/// A calendar as JSON: `{"source": "...", "holidays": ["2025-10-01", ...], "workdays": ["2025-09-28", ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarFile {
    /// Where the days come from (the State Council's notice, say).
    #[serde(default)]
    pub source: String,
    /// Public holidays, `YYYY-MM-DD`: no work, even on a weekday.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Make-up working days, `YYYY-MM-DD`: weekend days that are worked.
    #[serde(default)]
    pub workdays: Vec<String>,
}

impl Calendar {
    /// A calendar from its JSON form, checked: each date valid and listed once, no day both a
    /// holiday and a working day, and every make-up working day a Saturday or a Sunday.
    pub fn from_file(file: &CalendarFile) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidArgument {
            what: "calendar",
            reason,
        };
        check_text("calendar source", &file.source)?;
        if file.holidays.len() + file.workdays.len() > MAX_CALENDAR_DAYS {
            return Err(invalid(format!("lists more than {MAX_CALENDAR_DAYS} days")));
        }
        let dates = |texts: &[String]| -> Result<BTreeSet<Date>, Error> {
            let mut dates = BTreeSet::new();
            for text in texts {
                if !dates.insert(parse_date_of("calendar day", text)?) {
                    return Err(invalid(format!("{text} is listed twice")));
                }
            }
            Ok(dates)
        };
        let holidays = dates(&file.holidays)?;
        let workdays = dates(&file.workdays)?;
        if let Some(both) = holidays.intersection(&workdays).next() {
            return Err(invalid(format!("{both} is both a holiday and a working day")));
        }
        if let Some(weekday) = workdays.iter().find(|day| !is_weekend(**day)) {
            return Err(invalid(format!(
                "{weekday} is a weekday: a make-up working day is a Saturday or a Sunday"
            )));
        }
        Ok(Self {
            holidays,
            workdays,
            source: file.source.clone(),
        })
    }

    /// Reads a calendar from its JSON.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        Self::from_file(&from_json("calendar", "a calendar", json)?)
    }

    /// The JSON form.
    pub fn to_file(&self) -> CalendarFile {
        let texts = |days: &BTreeSet<Date>| days.iter().map(|day| format_date(*day)).collect();
        CalendarFile {
            source: self.source.clone(),
            holidays: texts(&self.holidays),
            workdays: texts(&self.workdays),
        }
    }

    /// Where the days come from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The last day the calendar lists, if any: deadlines after its year count weekends only.
    pub fn last_listed(&self) -> Option<Date> {
        self.holidays.last().max(self.workdays.last()).copied()
    }

    /// Whether `day` is a working day.
    pub fn is_working_day(&self, day: Date) -> bool {
        if self.workdays.contains(&day) {
            return true;
        }
        !is_weekend(day) && !self.holidays.contains(&day)
    }

    /// The `n`th working day after `from` (`from` itself not counted): the last day of a period
    /// of `n` working days that starts the day after `from`.
    pub fn add_working_days(&self, from: Date, n: u32) -> Option<Date> {
        let mut day = from;
        let mut counted = 0;
        while counted < n {
            day = day.checked_add(Duration::DAY)?;
            if self.is_working_day(day) {
                counted += 1;
            }
        }
        Some(day)
    }

    /// Working days left from `today` until `deadline`: those after today up to and including
    /// the deadline; 0 on the deadline; negative once it has passed (minus the working days
    /// since).
    pub fn working_days_left(&self, today: Date, deadline: Date) -> i64 {
        let (from, to, sign) = if today <= deadline {
            (today, deadline, 1)
        } else {
            (deadline, today, -1)
        };
        let mut days = 0i64;
        let mut day = from;
        while day < to {
            let Some(next) = day.checked_add(Duration::DAY) else {
                break;
            };
            day = next;
            if self.is_working_day(day) {
                days += 1;
            }
        }
        sign * days
    }
}

fn is_weekend(day: Date) -> bool {
    matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// A date as `YYYY-MM-DD`.
pub fn format_date(day: Date) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), day.month() as u8, day.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// China's official 2025 calendar (State Council notice of 12 November 2024): the National
    /// Day and Mid-Autumn holiday, with its make-up working days.
    fn autumn_2025() -> Calendar {
        Calendar::from_json(
            r#"{"source":"State Council 2024-11-12","holidays":["2025-10-01","2025-10-02","2025-10-03","2025-10-04",
                "2025-10-05","2025-10-06","2025-10-07","2025-10-08"],"workdays":["2025-09-28","2025-10-11"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn art15_thirty_working_days_skip_weekends_and_holidays_and_count_make_up_days() {
        let none = Calendar::default();
        // With weekends only, the 30th weekday after a Monday is the Monday six weeks later.
        assert_eq!(
            none.add_working_days(date!(2025 - 09 - 01), 30),
            Some(date!(2025 - 10 - 13))
        );
        let calendar = autumn_2025();
        assert!(calendar.is_working_day(date!(2025 - 09 - 28)), "a make-up Sunday");
        assert!(
            calendar.is_working_day(date!(2025 - 10 - 11)),
            "a make-up Saturday"
        );
        assert!(
            !calendar.is_working_day(date!(2025 - 10 - 06)),
            "a holiday Monday"
        );
        // From Friday 2025-09-26: Sun 28 (make-up), 29, 30 (3); Oct 1-8 off; 9, 10 (5); Sat 11
        // (6); then 13-17 (11), 20-24 (16), 27-31 (21), Nov 3-7 (26), Nov 10-13 (30).
        assert_eq!(
            calendar.add_working_days(date!(2025 - 09 - 26), 30),
            Some(date!(2025 - 11 - 13))
        );
        assert_eq!(
            calendar.working_days_left(date!(2025 - 09 - 26), date!(2025 - 11 - 13)),
            30
        );
        assert_eq!(
            calendar.working_days_left(date!(2025 - 11 - 13), date!(2025 - 11 - 13)),
            0
        );
        assert_eq!(
            calendar.working_days_left(date!(2025 - 11 - 17), date!(2025 - 11 - 13)),
            -2
        );
        assert_eq!(calendar.last_listed(), Some(date!(2025 - 10 - 11)));
    }

    #[test]
    fn a_calendar_that_contradicts_itself_is_refused() {
        for json in [
            r#"{"holidays":["2025-10-01"],"workdays":["2025-10-01"]}"#,
            r#"{"holidays":["2025-10-01","2025-10-01"]}"#,
            r#"{"workdays":["2025-10-09"]}"#,
            r#"{"holidays":["2025-02-30"]}"#,
            r#"{"holidays":[],"extra":1}"#,
        ] {
            assert!(Calendar::from_json(json).is_err(), "{json}");
        }
        let round_trip = Calendar::from_file(&autumn_2025().to_file()).unwrap();
        assert_eq!(round_trip, autumn_2025());
    }
}
