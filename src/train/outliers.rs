//! Synthetic outliers for outlier exposure (Hendrycks et al., ICLR 2019) when training the demo
//! model: images that belong to none of the classes, made from the training images themselves or
//! from seeded procedures, never from any evaluation set.
//!
//! A model trained on ten classes only has seen nothing else, so it maps anything to one of them,
//! often confidently (a digit on a black background looks like an airplane in the sky to it).
//! Training it to spread its softmax evenly over the classes on images with no object teaches
//! it what "none of these" looks like. Four generic families, in the spirit of the synthetic
//! pre-training images of Baradad et al. (NeurIPS 2021):
//! - `Shuffled`: a training image cut into a 4 × 4 grid whose tiles are permuted: its colours
//!   and local texture stay, its object does not;
//! - `DeadLeaves`: random discs and rectangles of random colours over a random background;
//! - `Noise`: Gaussian noise on a coarse grid, bilinearly upsampled (blobs to fine grain), with
//!   a random mean colour and contrast;
//! - `Fractal`: the attractor of a random iterated function system (2–4 contractive affine
//!   maps, drawn by the chaos game), one colour on another, as in FractalDB (Kataoka et al.,
//!   ACCV 2020).
//!
//! Half of each family is turned grey, and a dead-leaves image may hold a single shape.
//!
//! A fifth family is opt-in (`train --outlier-kinds`), for experiments:
//! - `Strokes`: one to four thick quadratic Bézier curves of one colour on a plain background:
//!   line drawings, handwriting, symbols. It was written after the four above left the demo
//!   model blind to MNIST's digits, so what it does to the MNIST figures is partly informed by
//!   that test set (no MNIST image is used).
//!
//! Two more are held out of training, so that `tune` can choose ΔEnergy's settings on outliers
//! the model has never been taught to reject (on the trained families every setting scores
//! near-perfectly, which tells the settings apart by noise):
//! - `Gratings`: one to three plane waves (sine or square, one to eight cycles across, any
//!   orientation), summed or multiplied into stripes, plaids and checks, between two colours;
//! - `Polygons`: one to five filled polygons of three to six sides in flat colours on a
//!   two-colour gradient, like clip art or signs.

use image::{Rgb, RgbImage};

use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shuffled,
    DeadLeaves,
    Noise,
    Fractal,
    Strokes,
    Gratings,
    Polygons,
}

/// `train`'s default families.
pub const KINDS: [Kind; 4] = [Kind::Shuffled, Kind::DeadLeaves, Kind::Noise, Kind::Fractal];

/// `tune`'s default validation families: held out of the demo model's training.
pub const HELD_OUT: [Kind; 2] = [Kind::Gratings, Kind::Polygons];

/// Every family, in the order their names are listed.
pub const ALL: [Kind; 7] = [
    Kind::Shuffled,
    Kind::DeadLeaves,
    Kind::Noise,
    Kind::Fractal,
    Kind::Strokes,
    Kind::Gratings,
    Kind::Polygons,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shuffled => "shuffled",
            Kind::DeadLeaves => "dead-leaves",
            Kind::Noise => "noise",
            Kind::Fractal => "fractal",
            Kind::Strokes => "strokes",
            Kind::Gratings => "gratings",
            Kind::Polygons => "polygons",
        }
    }
}

/// The families' names, comma-separated ("gratings, polygons").
pub fn names(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL.into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown outlier family {s:?} ({})", names(&ALL)))
    }
}

fn colour(rng: &mut Rng) -> [u8; 3] {
    let b = rng.next_u64();
    [b as u8, (b >> 8) as u8, (b >> 16) as u8]
}

/// Below `n` (n > 0).
fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// A square image of `size` pixels: one of `kinds` (not empty), chosen by `rng`, with `source`
/// (a training image of the same size) as the material of `Shuffled`; half of them in grey, so
/// the outliers span grey images as well as colour ones.
pub fn synthesize(kinds: &[Kind], source: &RgbImage, size: u32, rng: &mut Rng) -> RgbImage {
    let kind = kinds[below(rng, kinds.len() as u64) as usize];
    let img = make(kind, source, size, rng);
    if rng.next_u64() & 1 == 0 {
        grey(&img)
    } else {
        img
    }
}

/// ITU-R BT.601 luma in all three channels.
fn grey(img: &RgbImage) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let l = luma(img.get_pixel(x, y).0).round() as u8;
        Rgb([l, l, l])
    })
}

pub fn make(kind: Kind, source: &RgbImage, size: u32, rng: &mut Rng) -> RgbImage {
    match kind {
        Kind::Shuffled => shuffled(source, size, rng),
        Kind::DeadLeaves => dead_leaves(size, rng),
        Kind::Noise => noise(size, rng),
        Kind::Fractal => fractal(size, rng),
        Kind::Strokes => strokes(size, rng),
        Kind::Gratings => gratings(size, rng),
        Kind::Polygons => polygons(size, rng),
    }
}

fn shuffled(source: &RgbImage, size: u32, rng: &mut Rng) -> RgbImage {
    const GRID: u32 = 4;
    let tile = size / GRID;
    // A permutation of the tiles that moves every tile (a derangement by rejection): an identity
    // draw would hand back the training image itself as an "outlier".
    let n = (GRID * GRID) as usize;
    let perm = loop {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, below(rng, i as u64 + 1) as usize);
        }
        if p.iter().enumerate().all(|(i, &j)| i != j) {
            break p;
        }
    };
    let mut out = RgbImage::from_pixel(size, size, Rgb([0, 0, 0]));
    for (dst, &src) in perm.iter().enumerate() {
        let (dx, dy) = ((dst as u32 % GRID) * tile, (dst as u32 / GRID) * tile);
        let (sx, sy) = ((src as u32 % GRID) * tile, (src as u32 / GRID) * tile);
        for y in 0..tile {
            for x in 0..tile {
                out.put_pixel(dx + x, dy + y, *source.get_pixel(sx + x, sy + y));
            }
        }
    }
    out
}

fn dead_leaves(size: u32, rng: &mut Rng) -> RgbImage {
    let mut img = RgbImage::from_pixel(size, size, Rgb(colour(rng)));
    let shapes = 1 + below(rng, 30);
    let s = size as i64;
    for _ in 0..shapes {
        let c = Rgb(colour(rng));
        let (cx, cy) = (
            below(rng, size as u64) as i64,
            below(rng, size as u64) as i64,
        );
        let r = 1 + below(rng, (size / 3) as u64) as i64;
        let disc = rng.next_u64() & 1 == 0;
        let (rx, ry) = (r, 1 + below(rng, (size / 3) as u64) as i64);
        for y in (cy - ry).max(0)..(cy + ry + 1).min(s) {
            for x in (cx - rx).max(0)..(cx + rx + 1).min(s) {
                let inside = !disc || (x - cx).pow(2) + (y - cy).pow(2) <= r * r;
                if inside {
                    img.put_pixel(x as u32, y as u32, c);
                }
            }
        }
    }
    img
}

fn noise(size: u32, rng: &mut Rng) -> RgbImage {
    let grid = 2usize << below(rng, 4); // 2, 4, 8 or 16 cells a side
    let mean = colour(rng);
    let contrast = 20.0 + 80.0 * rng.uniform();
    let cells: Vec<[f32; 3]> = (0..(grid + 1) * (grid + 1))
        .map(|_| [rng.normal(), rng.normal(), rng.normal()])
        .collect();
    let at = |gx: usize, gy: usize| cells[gy * (grid + 1) + gx];
    RgbImage::from_fn(size, size, |x, y| {
        let fx = x as f32 * grid as f32 / size as f32;
        let fy = y as f32 * grid as f32 / size as f32;
        let (gx, gy) = (fx as usize, fy as usize);
        let (tx, ty) = (fx - gx as f32, fy - gy as f32);
        let mut px = [0u8; 3];
        for (c, v) in px.iter_mut().enumerate() {
            let top = at(gx, gy)[c] * (1.0 - tx) + at(gx + 1, gy)[c] * tx;
            let bottom = at(gx, gy + 1)[c] * (1.0 - tx) + at(gx + 1, gy + 1)[c] * tx;
            let z = top * (1.0 - ty) + bottom * ty;
            *v = (mean[c] as f32 + contrast * z).clamp(0.0, 255.0) as u8;
        }
        Rgb(px)
    })
}

fn fractal(size: u32, rng: &mut Rng) -> RgbImage {
    const POINTS: usize = 3000;
    // Affine maps x ↦ A x + b with A's entries uniform in ±1, scaled so its largest absolute
    // row sum is below 0.95: contractive, so the chaos game converges to an attractor.
    let maps: Vec<[f32; 6]> = (0..2 + below(rng, 3))
        .map(|_| {
            let mut m = [0f32; 6];
            for v in m.iter_mut() {
                *v = 2.0 * rng.uniform() - 1.0;
            }
            let norm = (m[0].abs() + m[1].abs()).max(m[2].abs() + m[3].abs());
            let k = (0.6 + 0.35 * rng.uniform()) / norm.max(1e-3);
            for v in m.iter_mut().take(4) {
                *v *= k;
            }
            m
        })
        .collect();
    let (mut x, mut y) = (0f32, 0f32);
    let mut pts = Vec::with_capacity(POINTS);
    for i in 0..POINTS + 20 {
        let m = &maps[below(rng, maps.len() as u64) as usize];
        (x, y) = (m[0] * x + m[1] * y + m[4], m[2] * x + m[3] * y + m[5]);
        if i >= 20 {
            pts.push((x, y));
        }
    }
    let (mut lo, mut hi) = ((f32::MAX, f32::MAX), (f32::MIN, f32::MIN));
    for &(px, py) in &pts {
        lo = (lo.0.min(px), lo.1.min(py));
        hi = (hi.0.max(px), hi.1.max(py));
    }
    // Fit the attractor into the image with a margin, keeping its aspect ratio.
    let span = (hi.0 - lo.0).max(hi.1 - lo.1).max(1e-6);
    let inner = size as f32 * (0.6 + 0.35 * rng.uniform());
    let off = (size as f32 - inner) / 2.0;
    let (bg, fg) = (Rgb(colour(rng)), Rgb(colour(rng)));
    let mut img = RgbImage::from_pixel(size, size, bg);
    for (px, py) in pts {
        let u = off + (px - lo.0) / span * (inner - 1.0);
        let v = off + (py - lo.1) / span * (inner - 1.0);
        img.put_pixel((u as u32).min(size - 1), (v as u32).min(size - 1), fg);
    }
    img
}

fn luma(c: [u8; 3]) -> f32 {
    super::augment::luma(c.map(f32::from))
}

/// `fg`, or where it is within 80 grey levels of `bg`, `fg` pushed to the other end of the grey
/// scale: a figure that does not stand out from its ground is no figure.
fn contrasting(bg: [u8; 3], fg: [u8; 3]) -> [u8; 3] {
    if (luma(fg) - luma(bg)).abs() >= 80.0 {
        fg
    } else if luma(bg) < 128.0 {
        fg.map(|v| 255 - v / 4)
    } else {
        fg.map(|v| v / 4)
    }
}

fn strokes(size: u32, rng: &mut Rng) -> RgbImage {
    let bg = colour(rng);
    // A stroke that does not stand out from its background is no drawing.
    let fg = contrasting(bg, colour(rng));
    let mut img = RgbImage::from_pixel(size, size, Rgb(bg));
    let s = size as f32;
    let radius = s / 32.0 * (0.7 + 1.3 * rng.uniform());
    let point = |rng: &mut Rng| {
        (
            s * (0.15 + 0.7 * rng.uniform()),
            s * (0.15 + 0.7 * rng.uniform()),
        )
    };
    for _ in 0..1 + below(rng, 4) {
        let (a, b, c) = (point(rng), point(rng), point(rng));
        let steps = 4 * size as usize;
        for i in 0..=steps {
            let t = i as f32 / steps as f32;
            let u = 1.0 - t;
            let x = u * u * a.0 + 2.0 * u * t * b.0 + t * t * c.0;
            let y = u * u * a.1 + 2.0 * u * t * b.1 + t * t * c.1;
            let r = radius.ceil() as i64;
            for py in (y as i64 - r).max(0)..=(y as i64 + r).min(size as i64 - 1) {
                for px in (x as i64 - r).max(0)..=(x as i64 + r).min(size as i64 - 1) {
                    let d2 = (px as f32 + 0.5 - x).powi(2) + (py as f32 + 0.5 - y).powi(2);
                    if d2 <= radius * radius {
                        img.put_pixel(px as u32, py as u32, Rgb(fg));
                    }
                }
            }
        }
    }
    img
}

fn lerp(a: [u8; 3], b: [u8; 3], t: f32) -> Rgb<u8> {
    Rgb(std::array::from_fn(|c| {
        (a[c] as f32 + (b[c] as f32 - a[c] as f32) * t).round() as u8
    }))
}

fn gratings(size: u32, rng: &mut Rng) -> RgbImage {
    use std::f32::consts::PI;
    let n = 1 + below(rng, 3) as usize;
    // (kx, ky, phase, square): a wave of one to eight periods across the image whatever its
    // size (at 32 pixels the finest period is four pixels), so a family looks alike at every
    // model's resolution.
    let finest = (size as f32 / 4.0).clamp(1.0, 8.0);
    let waves: Vec<(f32, f32, f32, bool)> = (0..n)
        .map(|_| {
            let angle = PI * rng.uniform();
            let cycles = 1.0 + (finest - 1.0) * rng.uniform();
            let k = 2.0 * PI * cycles / size as f32;
            let phase = 2.0 * PI * rng.uniform();
            (
                k * angle.cos(),
                k * angle.sin(),
                phase,
                rng.next_u64() & 1 == 0,
            )
        })
        .collect();
    let product = rng.next_u64() & 1 == 0;
    let a = colour(rng);
    let b = contrasting(a, colour(rng));
    RgbImage::from_fn(size, size, |x, y| {
        let wave = |&(kx, ky, phase, square): &(f32, f32, f32, bool)| {
            let v = (kx * (x as f32 + 0.5) + ky * (y as f32 + 0.5) + phase).sin();
            if square {
                v.signum()
            } else {
                v
            }
        };
        // Products of waves are checks and plaids; sums, moiré-like interference.
        let v = if product {
            waves.iter().map(wave).product::<f32>()
        } else {
            waves.iter().map(wave).sum::<f32>() / n as f32
        };
        lerp(a, b, (v + 1.0) / 2.0)
    })
}

/// Whether (x, y) is inside the polygon `vs` (even-odd rule).
fn inside(vs: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut odd = false;
    for (i, &(xi, yi)) in vs.iter().enumerate() {
        let (xj, yj) = vs[(i + vs.len() - 1) % vs.len()];
        if (yi > y) != (yj > y) && x < xi + (y - yi) * (xj - xi) / (yj - yi) {
            odd = !odd;
        }
    }
    odd
}

fn polygons(size: u32, rng: &mut Rng) -> RgbImage {
    use std::f32::consts::PI;
    let (top, bottom) = (colour(rng), colour(rng));
    let vertical = rng.next_u64() & 1 == 0;
    let s = size as f32;
    let mut img = RgbImage::from_fn(size, size, |x, y| {
        let along = if vertical { y } else { x };
        lerp(top, bottom, along as f32 / (s - 1.0).max(1.0))
    });
    for _ in 0..1 + below(rng, 5) {
        let (cx, cy) = (s * rng.uniform(), s * rng.uniform());
        let radius = s * (0.1 + 0.35 * rng.uniform());
        let sides = 3 + below(rng, 4) as usize;
        let turn = 2.0 * PI * rng.uniform();
        // Jittered radii: irregular shapes, not only regular polygons.
        let vs: Vec<(f32, f32)> = (0..sides)
            .map(|i| {
                let angle = turn + 2.0 * PI * i as f32 / sides as f32;
                let r = radius * (0.6 + 0.4 * rng.uniform());
                (cx + r * angle.cos(), cy + r * angle.sin())
            })
            .collect();
        let fill = Rgb(contrasting(top, colour(rng)));
        for y in 0..size {
            for x in 0..size {
                if inside(&vs, x as f32 + 0.5, y as f32 + 0.5) {
                    img.put_pixel(x, y, fill);
                }
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> RgbImage {
        RgbImage::from_fn(32, 32, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, 7]))
    }

    #[test]
    fn shuffled_moves_every_tile_and_keeps_every_pixel() {
        let src = source();
        let out = make(Kind::Shuffled, &src, 32, &mut Rng::new(1));
        let mut a: Vec<_> = src.pixels().map(|p| p.0).collect();
        let mut b: Vec<_> = out.pixels().map(|p| p.0).collect();
        assert_ne!(a, b);
        a.sort();
        b.sort();
        assert_eq!(a, b, "a permutation of the tiles keeps the pixels");
        // Tile (0, 0) of the output is some other tile of the source.
        assert_ne!(out.get_pixel(0, 0), src.get_pixel(0, 0));
    }

    #[test]
    fn grey_is_luma_in_every_channel() {
        let img = RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]));
        assert_eq!(grey(&img).get_pixel(1, 1).0, [76, 76, 76]);
        // Over many draws, both grey and colour outliers come out.
        let src = source();
        let mut rng = Rng::new(2);
        let greys = (0..40)
            .filter(|_| {
                let o = synthesize(&KINDS, &src, 32, &mut rng);
                o.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2])
            })
            .count();
        assert!((8..=32).contains(&greys), "{greys} of 40 grey");
    }

    #[test]
    fn strokes_stand_out_from_their_background() {
        for seed in 0..50 {
            let img = make(Kind::Strokes, &source(), 32, &mut Rng::new(seed));
            let bg = img.get_pixel(0, 0).0;
            let ink: Vec<_> = img.pixels().filter(|p| p.0 != bg).collect();
            // Some ink, most of the image background, and the ink far from it in grey.
            assert!(
                !ink.is_empty() && ink.len() < 32 * 32 / 2,
                "seed {seed}: {}",
                ink.len()
            );
            assert!(
                ink.iter().all(|p| (luma(p.0) - luma(bg)).abs() >= 60.0),
                "seed {seed}"
            );
        }
        assert_eq!("strokes".parse::<Kind>(), Ok(Kind::Strokes));
        assert_eq!("dead-leaves".parse::<Kind>(), Ok(Kind::DeadLeaves));
        assert!("digits".parse::<Kind>().is_err());
    }

    #[test]
    fn polygons_fill_by_the_even_odd_rule() {
        let square = [(1.0, 1.0), (3.0, 1.0), (3.0, 3.0), (1.0, 3.0)];
        assert!(inside(&square, 2.0, 2.0));
        assert!(!inside(&square, 0.5, 2.0) && !inside(&square, 3.5, 2.0));
        assert!(!inside(&square, 2.0, 0.5) && !inside(&square, 2.0, 3.5));
        // A bow tie crosses itself: its two lobes are inside, beyond them is not.
        let bow = [(0.0, 0.0), (4.0, 4.0), (4.0, 0.0), (0.0, 4.0)];
        assert!(inside(&bow, 1.0, 2.0) && inside(&bow, 3.0, 2.0));
        assert!(!inside(&bow, 2.0, 0.5));
    }

    #[test]
    fn held_out_families_show_a_figure_on_a_ground() {
        for kind in HELD_OUT {
            for seed in 0..50 {
                for size in [32, 224] {
                    let img = make(kind, &source(), size, &mut Rng::new(seed));
                    let lumas: Vec<f32> = img.pixels().map(|p| luma(p.0)).collect();
                    let lo = lumas.iter().copied().fold(f32::MAX, f32::min);
                    let hi = lumas.iter().copied().fold(f32::MIN, f32::max);
                    // Every figure stands 80 grey levels off its ground (rounding aside); a
                    // sine grating sampled at a few points may not reach both of its colours.
                    assert!(
                        hi - lo >= 40.0,
                        "{kind:?} seed {seed} size {size}: {lo}..{hi}"
                    );
                }
            }
        }
        assert_eq!("gratings".parse::<Kind>(), Ok(Kind::Gratings));
        assert_eq!("polygons".parse::<Kind>(), Ok(Kind::Polygons));
        let err = "digits".parse::<Kind>().unwrap_err();
        assert!(err.contains("strokes, gratings, polygons"), "{err}");
    }

    #[test]
    fn families_are_seeded_and_varied() {
        let src = source();
        for kind in ALL {
            let a = make(kind, &src, 32, &mut Rng::new(5));
            let b = make(kind, &src, 32, &mut Rng::new(5));
            let c = make(kind, &src, 32, &mut Rng::new(6));
            assert_eq!(a, b, "{kind:?} is seeded");
            assert_ne!(a, c, "{kind:?} varies with the seed");
            assert_eq!(a.dimensions(), (32, 32));
            // Not a flat image: some pixel differs from the first.
            assert!(a.pixels().any(|p| p != a.get_pixel(0, 0)), "{kind:?}");
        }
    }
}
