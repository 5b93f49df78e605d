//! The report charts: drawn with plotters into memory and encoded as PNG,
//! with the DejaVu Sans font carried by the binary (no system font needed).
//! Drawn at twice the size they are shown at, so they stay sharp on phones.

use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// The size a chart is shown at, in CSS pixels; drawn at `SCALE` times it.
pub const WIDTH: u32 = 680;
pub const HEIGHT: u32 = 260;
const SCALE: u32 = 2;

const BLUE: RGBColor = RGBColor(37, 99, 235);
const PALE_BLUE: RGBColor = RGBColor(191, 219, 254);
const RED: RGBColor = RGBColor(220, 38, 38);
const AMBER: RGBColor = RGBColor(245, 158, 11);
const GREEN: RGBColor = RGBColor(16, 185, 129);
const GREY: RGBColor = RGBColor(156, 163, 175);
const INK: RGBColor = RGBColor(55, 65, 81);

static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // The bytes are the font files the dejavu crate carries; they parse.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// One bar of a stacked bar chart: its label and its parts (bottom first).
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub parts: Vec<f64>,
}

/// A series of a bar chart: its name (for the legend) and colour index.
#[derive(Clone, Copy, Debug)]
pub enum Palette {
    /// Enrolled (pale) behind active (blue): drawn overlapping, not stacked.
    Activity,
    /// High, medium, low risk: stacked.
    Risk,
    /// Grade bands A–F and "no score": one colour each.
    Grades,
}

/// A bar chart as PNG bytes. `Palette::Activity` draws the parts of a bar
/// over each other (the second inside the first); the others stack them.
pub fn bar_chart(
    title_y: &str,
    bars: &[Bar],
    palette: Palette,
    legend: &[&str],
) -> Result<Vec<u8>> {
    register_fonts();
    let (w, h) = (WIDTH * SCALE, HEIGHT * SCALE);
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let max = bars
            .iter()
            .map(|b| match palette {
                Palette::Activity => b.parts.iter().cloned().fold(0.0, f64::max),
                _ => b.parts.iter().sum(),
            })
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.12;
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        let font = |size: u32| ("sans-serif", (size * SCALE) as f64).into_font();
        let mut chart = ChartBuilder::on(&root)
            .margin(10 * SCALE)
            .x_label_area_size(28 * SCALE)
            .y_label_area_size(44 * SCALE)
            // An integer range is inclusive in plotters: 0..n-1 gives n slots.
            .build_cartesian_2d((0..bars.len().max(1) - 1).into_segmented(), 0.0..max)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(229, 231, 235))
            .axis_style(GREY)
            .y_desc(title_y)
            .y_labels(5)
            .label_style(font(11).color(&INK))
            .axis_desc_style(font(11).color(&INK))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get(*i).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_label_formatter(&|v| {
                if *v >= 10_000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else {
                    format!("{v:.0}")
                }
            })
            .draw()
            .map_err(draw_error)?;
        let colours: Vec<RGBColor> = match palette {
            Palette::Activity => vec![PALE_BLUE, BLUE],
            Palette::Risk => vec![RED, AMBER, GREEN],
            Palette::Grades => vec![GREEN, BLUE, AMBER, RGBColor(249, 115, 22), RED, GREY],
        };
        for (i, bar) in bars.iter().enumerate() {
            let mut bottom = 0.0;
            for (k, value) in bar.parts.iter().enumerate() {
                let colour = match palette {
                    Palette::Grades => colours[i % colours.len()],
                    _ => colours[k % colours.len()],
                };
                let (from, to) = match palette {
                    Palette::Activity => (0.0, *value),
                    _ => (bottom, bottom + value),
                };
                bottom += value;
                if to <= from {
                    continue;
                }
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(i), from),
                            (SegmentValue::Exact(i + 1), to),
                        ],
                        colour.filled(),
                    )))
                    .map_err(draw_error)?;
            }
            // The total (or the front value) above the bar.
            let top = match palette {
                Palette::Activity => bar.parts.last().copied().unwrap_or(0.0),
                _ => bar.parts.iter().sum(),
            };
            let peak = match palette {
                Palette::Activity => bar.parts.iter().cloned().fold(0.0, f64::max),
                _ => top,
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{top:.0}"),
                    (SegmentValue::CenterOf(i), peak + max * 0.02),
                    font(10)
                        .color(&INK)
                        .pos(plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Bottom,
                        )),
                )))
                .map_err(draw_error)?;
        }
        // The legend, drawn by hand at the top right (plotters' series
        // labels need one series per name, and these bars are drawn one
        // rectangle at a time).
        if !legend.is_empty() {
            let mut x = (w - 20 * SCALE) as i32;
            for (k, name) in legend.iter().enumerate().rev() {
                let colour = colours[k % colours.len()];
                let text_w = (name.chars().count() as u32 * 7 + 22) * SCALE;
                x -= text_w as i32;
                root.draw(&Rectangle::new(
                    [
                        (x, (12 * SCALE) as i32),
                        (x + (10 * SCALE) as i32, (22 * SCALE) as i32),
                    ],
                    colour.filled(),
                ))
                .map_err(draw_error)?;
                root.draw(&Text::new(
                    name.to_string(),
                    (x + (14 * SCALE) as i32, (11 * SCALE) as i32),
                    font(11).color(&INK),
                ))
                .map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)?;
    }
    encode_png(&pixels, w, h)
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Best);
        let mut writer = encoder.write_header().context("encoding a chart as PNG")?;
        writer
            .write_image_data(rgb)
            .context("encoding a chart as PNG")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_a_png_of_the_stated_size_with_ink_on_it() {
        let bars: Vec<Bar> = (0..8)
            .map(|i| Bar {
                label: format!("W{i}"),
                parts: vec![3.0 + i as f64, 10.0, 40.0],
            })
            .collect();
        let png_bytes =
            bar_chart("students", &bars, Palette::Risk, &["high", "medium", "low"]).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH * SCALE, HEIGHT * SCALE));
        let pixels = &buf[..info.buffer_size()];
        // The bars are drawn in their colours, and text (dark grey) is there:
        // a chart whose font failed to load would have no INK pixels.
        let has = |c: RGBColor| pixels.chunks(3).any(|p| p == [c.0, c.1, c.2]);
        assert!(has(RED) && has(AMBER) && has(GREEN));
        let dark = pixels
            .chunks(3)
            .filter(|p| p[0] < 120 && p[1] < 120 && p[2] < 140)
            .count();
        assert!(dark > 500, "only {dark} dark pixels: no text drawn?");
    }
}
