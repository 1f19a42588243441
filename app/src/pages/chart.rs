//! Charts drawn on the server: plain SVG made from the data by pure functions, so that a chart shows
//! without JavaScript (and hydrates like any other markup). The arithmetic — a time and a value to a point
//! in the plot box, unknown values and missing buckets as gaps, a y scale per plot — lives in [`draw`] and is
//! unit-tested; the pages only say which lines to draw.

use chrono::{DateTime, TimeDelta, Utc};
use leptos::prelude::*;

/// The SVG's own coordinates; CSS scales it to the width it gets.
const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 116.0;
/// Where the data is drawn: room for the title above, the y labels on the left, the time labels below.
pub const PLOT: PlotBox = PlotBox { left: 44.0, top: 16.0, width: 268.0, height: 80.0 };
/// How the time axis labels its ends and middle (the page says the times are UTC).
const TIME_LABEL: &str = "%m-%d %H:%M";

/// A rectangle in the SVG's coordinates (y grows downwards, as in SVG).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlotBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl PlotBox {
    fn right(&self) -> f64 {
        self.left + self.width
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// The values a plot's y axis spans; always `lo < hi`, so scaling never divides by zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
}

impl Range {
    /// The span of the finite `values` (down to 0 when `from_zero`, as for counts); `None` when there is
    /// none. A flat or nearly flat series gets a span of a fifth of its size around its middle, so that it
    /// is drawn mid-box as the nearly straight line it is, rather than its noise blown up to the box's
    /// height (or a division by zero).
    pub fn of(values: impl IntoIterator<Item = f64>, from_zero: bool) -> Option<Self> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            return None;
        }
        if from_zero {
            lo = lo.min(0.0);
        }
        let size = lo.abs().max(hi.abs());
        if size < 1e-9 {
            return Some(if from_zero { Self { lo: 0.0, hi: 1.0 } } else { Self { lo: -1.0, hi: 1.0 } });
        }
        let least = size * 0.2;
        if hi - lo >= least {
            return Some(Self { lo, hi });
        }
        let middle = (lo + hi) / 2.0;
        Some(Self { lo: middle - least / 2.0, hi: middle + least / 2.0 })
    }

    /// Where `v` falls: 0 at `lo`, 1 at `hi` (clamped to the box).
    pub fn fraction(&self, v: f64) -> f64 {
        ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }
}

/// A time and the value measured then, if it is known.
pub type Sample = (DateTime<Utc>, Option<f64>);

/// One line of a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The legend's name for it.
    pub label: &'static str,
    /// Its CSS class (its colour).
    pub class: &'static str,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

/// The stretches of known values to draw as one polyline each. An unknown value ends a stretch, and so does
/// a step of more than `max_gap` between two known values (the buckets between are missing: nobody
/// reported); joining across either would draw values nobody measured.
pub fn runs(samples: &[Sample], max_gap: Option<TimeDelta>) -> Vec<Vec<(DateTime<Utc>, f64)>> {
    let mut runs: Vec<Vec<(DateTime<Utc>, f64)>> = Vec::new();
    let mut current: Vec<(DateTime<Utc>, f64)> = Vec::new();
    for &(at, value) in samples {
        let value = value.filter(|v| v.is_finite());
        let gap = current.last().is_some_and(|&(last, _)| max_gap.is_some_and(|gap| at - last > gap));
        if (value.is_none() || gap) && !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
        if let Some(v) = value {
            current.push((at, v));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Where time `at` and value `v` fall in `plot`: `from` at its left edge, `to` at its right; `range.lo` at
/// its bottom, `range.hi` at its top. Times outside `[from, to]` are held at the edges.
pub fn position(
    at: DateTime<Utc>,
    v: f64,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    range: Range,
    plot: PlotBox,
) -> (f64, f64) {
    let span = (to - from).as_seconds_f64();
    let t = if span > 0.0 { ((at - from).as_seconds_f64() / span).clamp(0.0, 1.0) } else { 1.0 };
    (plot.left + t * plot.width, plot.top + (1.0 - range.fraction(v)) * plot.height)
}

/// Points as an SVG polyline's `points` attribute.
fn points_attribute(points: &[(f64, f64)]) -> String {
    points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ")
}

/// One line as drawn: a polyline per stretch, and a dot for each stretch of a single point (a polyline of
/// one point would not show).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrawnLine {
    pub class: &'static str,
    pub polylines: Vec<String>,
    pub dots: Vec<(f64, f64)>,
}

/// What a plot draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawing {
    pub lines: Vec<DrawnLine>,
    /// The y axis (its labels: `hi` at the top, `lo` at the bottom); `None` when no value is known.
    pub range: Option<Range>,
}

/// Draws `lines` over `[from, to]` in `plot`, on one y scale spanning their known values.
pub fn draw(
    lines: &[Line],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    max_gap: Option<TimeDelta>,
    from_zero: bool,
    plot: PlotBox,
) -> Drawing {
    let known = lines.iter().flat_map(|l| l.samples.iter().filter_map(|(_, v)| *v));
    let Some(range) = Range::of(known, from_zero) else {
        return Drawing { lines: Vec::new(), range: None };
    };
    let drawn = lines
        .iter()
        .map(|line| {
            let mut drawn = DrawnLine { class: line.class, ..DrawnLine::default() };
            for run in runs(&line.samples, max_gap) {
                let points: Vec<(f64, f64)> =
                    run.iter().map(|&(at, v)| position(at, v, (from, to), range, plot)).collect();
                match points.as_slice() {
                    [one] => drawn.dots.push(*one),
                    _ => drawn.polylines.push(points_attribute(&points)),
                }
            }
            drawn
        })
        .collect();
    Drawing { lines: drawn, range: Some(range) }
}

/// A value for an axis label: three significant figures or so, with k/M/G for large ones.
pub fn short(v: f64) -> String {
    short_with(v, 0)
}

/// The y axis's labels, its top (`hi`) and its bottom (`lo`): [`short`], with more decimals where that
/// alone would print both alike.
pub fn axis_labels(range: Range) -> (String, String) {
    (0..=4)
        .map(|extra| (short_with(range.hi, extra), short_with(range.lo, extra)))
        .find(|(hi, lo)| hi != lo)
        .unwrap_or_else(|| (short(range.hi), short(range.lo)))
}

/// [`short`] with `extra` more decimals.
fn short_with(v: f64, extra: usize) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
    };
    let (scaled, suffix) = match a {
        a if a >= 1e9 => (v / 1e9, " G"),
        a if a >= 1e6 => (v / 1e6, " M"),
        a if a >= 1e4 => (v / 1e3, " k"),
        _ => (v, ""),
    };
    let digits = extra
        + match scaled.abs() {
            s if s >= 100.0 => 0,
            s if s >= 10.0 => 1,
            _ => 2,
        };
    let text = trim(format!("{scaled:.digits$}"));
    // "-0" reads oddly under a scale that starts at zero.
    if text == "-0" { format!("0{suffix}") } else { format!("{text}{suffix}") }
}

/// A plot of `lines` over `[from, to]`, with its own y scale (labelled with its ends) and a time axis
/// (labelled at its ends and middle); a legend under it when it has several lines. `max_gap`: see [`runs`].
#[component]
pub fn Plot(
    title: &'static str,
    unit: &'static str,
    lines: Vec<Line>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max_gap: Option<TimeDelta>,
    /// Whether the y scale starts at 0 (counts) rather than at the lowest value.
    from_zero: bool,
    /// The SVG's `data-testid`.
    #[prop(into)]
    test_id: String,
) -> impl IntoView {
    let drawing = draw(&lines, (from, to), max_gap, from_zero, PLOT);
    let legend = (lines.len() > 1).then(|| {
        view! {
            <ul class="legend">
                {lines.iter().map(|l| view! {
                    <li><span class=format!("swatch {}", l.class)></span>{l.label}</li>
                }).collect_view()}
            </ul>
        }
    });
    let heading = if unit.is_empty() { title.to_owned() } else { format!("{title} ({unit})") };
    let middle = from + (to - from) / 2;
    let p = PLOT;
    let time_y = n(p.bottom() + 12.0);
    let y_labels = drawing.range.map(|r| {
        let (hi, lo) = axis_labels(r);
        view! {
            <text class="label" x=n(p.left - 4.0) y=n(p.top + 7.0) text-anchor="end">{hi}</text>
            <text class="label" x=n(p.left - 4.0) y=n(p.bottom()) text-anchor="end">{lo}</text>
        }
    });
    let unknown = drawing.range.is_none().then(|| {
        view! {
            <text class="none" x=n(p.left + p.width / 2.0) y=n(p.top + p.height / 2.0 + 4.0) text-anchor="middle">
                "unknown"
            </text>
        }
    });
    let polylines: usize = drawing.lines.iter().map(|l| l.polylines.len()).sum();
    let lines = drawing.lines.into_iter().map(drawn_line).collect_view();
    let label = heading.clone();
    view! {
        <div class="plot">
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=label
                data-testid=test_id data-polylines=polylines>
                <text class="title" x=n(p.left) y="11">{heading}</text>
                <rect class="frame" x=n(p.left) y=n(p.top) width=n(p.width) height=n(p.height)></rect>
                {y_labels}
                <text class="label" x=n(p.left) y=time_y.clone() text-anchor="start">
                    {from.format(TIME_LABEL).to_string()}
                </text>
                <text class="label" x=n(p.left + p.width / 2.0) y=time_y.clone() text-anchor="middle">
                    {middle.format(TIME_LABEL).to_string()}
                </text>
                <text class="label" x=n(p.right()) y=time_y text-anchor="end">
                    {to.format(TIME_LABEL).to_string()}
                </text>
                {lines}
                {unknown}
            </svg>
            {legend}
        </div>
    }
}

/// A coordinate as an attribute (a tenth of a unit is finer than any screen shows it).
fn n(v: f64) -> String {
    format!("{v:.1}")
}

fn drawn_line(line: DrawnLine) -> impl IntoView {
    let class = format!("line {}", line.class);
    let polylines = line
        .polylines
        .into_iter()
        .map(|points| view! { <polyline class=class.clone() points=points></polyline> })
        .collect_view();
    let dots = line
        .dots
        .into_iter()
        .map(|(x, y)| view! { <circle class=class.clone() cx=n(x) cy=n(y) r="2"></circle> })
        .collect_view();
    view! { {polylines} {dots} }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    const BOX: PlotBox = PlotBox { left: 10.0, top: 20.0, width: 100.0, height: 50.0 };

    #[test]
    fn values_map_into_the_plot_box_time_across_and_value_up() {
        let range = Range { lo: 0.0, hi: 4.0 };
        let window = (at(0), at(10));
        assert_eq!(position(at(0), 0.0, window, range, BOX), (10.0, 70.0), "oldest, lowest: bottom left");
        assert_eq!(position(at(10), 4.0, window, range, BOX), (110.0, 20.0), "newest, highest: top right");
        assert_eq!(position(at(5), 1.0, window, range, BOX), (60.0, 57.5));
        // Outside the window or the range: held at the box's edges, never drawn outside it.
        assert_eq!(position(at(-3), 9.0, window, range, BOX), (10.0, 20.0));
        assert_eq!(position(at(12), -1.0, window, range, BOX), (110.0, 70.0));
    }

    #[test]
    fn the_range_spans_the_known_values_and_is_never_empty() {
        assert_eq!(Range::of([3.0, 1.0, 2.0], false), Some(Range { lo: 1.0, hi: 3.0 }));
        assert_eq!(Range::of([3.0, 1.0], true), Some(Range { lo: 0.0, hi: 3.0 }), "counts start at 0");
        assert_eq!(Range::of([], false), None);
        assert_eq!(Range::of([f64::NAN], false), None);
        let flat = Range::of([40.0, 40.0], false).unwrap();
        assert!(flat.lo < 40.0 && flat.hi > 40.0, "{flat:?}");
        assert_eq!(flat.fraction(40.0), 0.5, "a flat series is drawn mid-box");
        assert_eq!(Range::of([0.0], true), Some(Range { lo: 0.0, hi: 1.0 }));
        assert_eq!(Range::of([0.0], false), Some(Range { lo: -1.0, hi: 1.0 }));
        // Nearly flat: its noise is not blown up to the box's height.
        let steady = Range::of([9.7989, 9.7991], false).unwrap();
        assert!((steady.hi - steady.lo - 0.2 * 9.7991).abs() < 1e-9, "{steady:?}");
        assert!((steady.fraction(9.7991) - steady.fraction(9.7989)) < 0.001);
    }

    #[test]
    fn an_unknown_value_or_a_missing_stretch_splits_the_line() {
        let samples = [
            (at(0), Some(1.0)),
            (at(1), Some(2.0)),
            (at(2), None),
            (at(3), Some(3.0)),
            (at(4), Some(4.0)),
            (at(9), Some(5.0)),
        ];
        let runs_of = |gap| runs(&samples, gap).iter().map(|r| r.len()).collect::<Vec<_>>();
        assert_eq!(runs_of(Some(TimeDelta::minutes(3))), [2, 2, 1], "None, then a 5-minute hole");
        assert_eq!(runs_of(None), [2, 3], "only the None without a gap limit");
        assert!(runs(&[(at(0), None)], None).is_empty());
    }

    #[test]
    fn a_drawing_has_a_polyline_per_stretch_and_a_dot_for_a_lone_point() {
        let line = Line {
            label: "load",
            class: "load",
            samples: vec![(at(0), Some(0.0)), (at(5), Some(2.0)), (at(6), None), (at(10), Some(1.0))],
        };
        let drawing = draw(&[line], (at(0), at(10)), None, false, BOX);
        assert_eq!(drawing.range, Some(Range { lo: 0.0, hi: 2.0 }));
        let drawn = &drawing.lines[0];
        assert_eq!(drawn.polylines, ["10.0,70.0 60.0,20.0"]);
        assert_eq!(drawn.dots, [(110.0, 45.0)]);

        let nothing = Line { label: "rx", class: "rx", samples: vec![(at(0), None)] };
        let drawing = draw(&[nothing], (at(0), at(10)), None, false, BOX);
        assert_eq!((drawing.range, drawing.lines.len()), (None, 0), "nothing known: nothing drawn");
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(0.523), "0.52");
        assert_eq!(short(40.0), "40");
        assert_eq!(short(1024.0), "1024");
        assert_eq!(short(12_500.0), "12.5 k");
        assert_eq!(short(3_400_000.0), "3.4 M");
        assert_eq!(short(-0.001), "0");
        // Labels that would read alike get more decimals.
        assert_eq!(axis_labels(Range { lo: 0.0762, hi: 0.0777 }), ("0.078".to_owned(), "0.076".to_owned()));
        assert_eq!(axis_labels(Range { lo: 1.0, hi: 3.0 }), ("3".to_owned(), "1".to_owned()));
    }
}
