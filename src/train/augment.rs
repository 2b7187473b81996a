//! Training-time views of an image: what the trainer draws for each sample and how it turns
//! the image into the model's normalised CHW floats.
//!
//! Two recipes. `shift` is the standard CIFAR one (4-pixel shifts, flips): enough for the
//! demo model's 22 CPU epochs. `crop` adds what long runs need so that a ViT does not learn
//! the training images by heart, and what photos of the same classes taken elsewhere differ by
//! (the covariate-shift set): random resized crops and colour jitter. No greyscale: the
//! synthetic outliers are grey half of the time, and grey views of the classes would teach the
//! model the opposite of what outlier exposure does.

use std::str::FromStr;

use image::RgbImage;

use crate::clip::preprocess::PreprocessConfig;
use crate::rng::Rng;

/// Which views training draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Augment {
    /// The image as it is.
    None,
    /// Shifts of up to 4 pixels (edges replicated) and horizontal flips.
    Shift,
    /// Random resized crops (35–100% of the area, aspect 3:4 to 4:3), flips, and brightness,
    /// contrast and saturation each scaled by a factor in [0.6, 1.4].
    Crop,
}

impl Augment {
    pub fn name(self) -> &'static str {
        match self {
            Augment::None => "none",
            Augment::Shift => "shift",
            Augment::Crop => "crop",
        }
    }
}

impl FromStr for Augment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Augment::None),
            "shift" => Ok(Augment::Shift),
            "crop" => Ok(Augment::Crop),
            _ => Err(format!("unknown augmentation {s:?} (none, shift or crop)")),
        }
    }
}

const CROP_AREA: (f32, f32) = (0.35, 1.0);
const CROP_ASPECT: (f32, f32) = (3.0 / 4.0, 4.0 / 3.0);
const JITTER: f32 = 0.4;

/// One drawn view: the source box (in pixels of the source image), a mirror, and the colour
/// factors (brightness, contrast, saturation; 1 leaves the colour alone).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub x0: f32,
    pub y0: f32,
    pub w: f32,
    pub h: f32,
    pub flip: bool,
    pub colour: [f32; 3],
}

impl View {
    /// The whole `size`×`size` image, unchanged.
    pub fn identity(size: usize) -> Self {
        Self {
            x0: 0.0,
            y0: 0.0,
            w: size as f32,
            h: size as f32,
            flip: false,
            colour: [1.0; 3],
        }
    }

    /// Draws the view of one sample. `Shift` takes exactly one number from `rng`, as the demo
    /// model's recipe always has, so that its runs stay bit for bit what they were.
    pub fn draw(augment: Augment, size: usize, rng: &mut Rng) -> Self {
        let mut v = Self::identity(size);
        match augment {
            Augment::None => {}
            Augment::Shift => {
                let r = rng.next_u64();
                v.x0 = ((r % 9) as i64 - 4) as f32;
                v.y0 = (((r >> 8) % 9) as i64 - 4) as f32;
                v.flip = (r >> 16) & 1 == 1;
            }
            Augment::Crop => {
                let s = size as f32;
                let area = s * s * lerp(CROP_AREA, rng.uniform());
                let aspect = lerp((CROP_ASPECT.0.ln(), CROP_ASPECT.1.ln()), rng.uniform()).exp();
                v.w = (area * aspect).sqrt().min(s);
                v.h = (area / aspect).sqrt().min(s);
                v.x0 = (s - v.w) * rng.uniform();
                v.y0 = (s - v.h) * rng.uniform();
                v.flip = rng.uniform() < 0.5;
                for c in &mut v.colour {
                    *c = lerp((1.0 - JITTER, 1.0 + JITTER), rng.uniform());
                }
            }
        }
        v
    }

    /// Whether the box is a whole-pixel shift of the image (no resampling needed).
    fn is_shift(&self, size: usize) -> bool {
        let s = size as f32;
        self.w == s && self.h == s && self.x0.fract() == 0.0 && self.y0.fract() == 0.0
    }
}

/// ITU-R BT.601 luma, the grey of a colour (any scale: 0–1 or 0–255).
pub(crate) fn luma([r, g, b]: [f32; 3]) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn lerp((a, b): (f32, f32), t: f32) -> f32 {
    a + (b - a) * t
}

/// Writes `view` of `img` (square, of the model's size) into `out` as normalised CHW floats.
pub fn render(img: &RgbImage, view: &View, cfg: &PreprocessConfig, out: &mut [f32]) {
    let size = img.width() as usize;
    let plane = size * size;
    let mut rgb = vec![0f32; 3 * plane];
    if view.is_shift(size) {
        shifted(img, view, &mut rgb);
    } else {
        resampled(img, view, &mut rgb);
    }
    if view.colour != [1.0; 3] {
        jitter(&mut rgb, view.colour);
    }
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] - cfg.mean[c]) / cfg.std[c];
        }
    }
}

/// A whole-pixel shift with the edges replicated, then the mirror: the `shift` recipe, exactly.
fn shifted(img: &RgbImage, view: &View, rgb: &mut [f32]) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (dx, dy) = (view.x0 as i64, view.y0 as i64);
    let raw = img.as_raw();
    for y in 0..h {
        let sy = (y + dy).clamp(0, h - 1);
        for x in 0..w {
            let xx = if view.flip { w - 1 - x } else { x };
            let sx = (xx + dx).clamp(0, w - 1);
            let src = ((sy * w + sx) * 3) as usize;
            let dst = ((y * w + x) * 3) as usize;
            for c in 0..3 {
                rgb[dst + c] = raw[src + c] as f32 / 255.0;
            }
        }
    }
}

/// The box resampled to the full size, bilinearly, sampling at pixel centres.
fn resampled(img: &RgbImage, view: &View, rgb: &mut [f32]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let at = |x: usize, y: usize, c: usize| raw[(y * w + x) * 3 + c] as f32 / 255.0;
    let (sx, sy) = (view.w / w as f32, view.h / h as f32);
    for y in 0..h {
        let fy = (view.y0 + (y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..w {
            let xx = if view.flip { w - 1 - x } else { x };
            let fx = (view.x0 + (xx as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(w - 1);
            for c in 0..3 {
                let top = at(x0, y0, c) * (1.0 - tx) + at(x1, y0, c) * tx;
                let bottom = at(x0, y1, c) * (1.0 - tx) + at(x1, y1, c) * tx;
                rgb[(y * w + x) * 3 + c] = top * (1.0 - ty) + bottom * ty;
            }
        }
    }
}

/// Brightness, contrast and saturation in that order, as torchvision's ColorJitter defines
/// them (contrast about the image's mean grey, saturation about each pixel's grey), clamped to
/// [0, 1] after each.
fn jitter(rgb: &mut [f32], [brightness, contrast, saturation]: [f32; 3]) {
    let grey = |p: &[f32]| luma([p[0], p[1], p[2]]);
    for v in rgb.iter_mut() {
        *v = (*v * brightness).clamp(0.0, 1.0);
    }
    let mean = rgb.chunks_exact(3).map(grey).sum::<f32>() / (rgb.len() / 3) as f32;
    for v in rgb.iter_mut() {
        *v = (mean + (*v - mean) * contrast).clamp(0.0, 1.0);
    }
    for p in rgb.chunks_exact_mut(3) {
        let g = grey(p);
        for v in p.iter_mut() {
            *v = (g + (*v - g) * saturation).clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(size: u32) -> RgbImage {
        RgbImage::from_fn(size, size, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
        })
    }

    fn pixels(img: &RgbImage, v: &View) -> Vec<f32> {
        let cfg = PreprocessConfig::clip(img.width());
        let mut out = vec![0f32; 3 * (img.width() * img.height()) as usize];
        render(img, v, &cfg, &mut out);
        out
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    fn normalised(img: &RgbImage) -> Vec<f32> {
        let cfg = PreprocessConfig::clip(img.width());
        let plane = (img.width() * img.height()) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (p[c] as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
            }
        }
        out
    }

    #[test]
    fn the_identity_view_is_the_image() {
        let img = gradient(32);
        assert_eq!(pixels(&img, &View::identity(32)), normalised(&img));
    }

    #[test]
    fn the_whole_box_resampled_is_the_image() {
        // A box of the whole image, offset by a hair so that it is resampled: bilinear sampling
        // at the pixel centres gives the pixels back.
        let img = gradient(32);
        let v = View {
            x0: 1e-6,
            ..View::identity(32)
        };
        let d = worst(&pixels(&img, &v), &normalised(&img));
        assert!(d < 1e-3, "{d}");
    }

    #[test]
    fn a_shift_moves_and_a_flip_mirrors() {
        let img = gradient(32);
        let plane = 32 * 32;
        let v = View {
            x0: 3.0,
            flip: true,
            ..View::identity(32)
        };
        let out = pixels(&img, &v);
        let base = normalised(&img);
        // Output column x reads source column (31 − x) + 3, replicated at the edge.
        for x in 0..32usize {
            let sx = (31 - x as i64 + 3).clamp(0, 31) as usize;
            assert_eq!(out[5 * 32 + x], base[5 * 32 + sx]);
            assert_eq!(out[2 * plane + 5 * 32 + x], base[2 * plane + 5 * 32 + sx]);
        }
    }

    #[test]
    fn shifts_replicate_the_edges() {
        let img = RgbImage::from_fn(4, 4, |x, y| image::Rgb([(x * 10 + y) as u8, 0, 0]));
        let cfg = PreprocessConfig {
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
            ..PreprocessConfig::clip(4)
        };
        let mut out = vec![0f32; 48];
        let view = |x0: f32, y0: f32, flip: bool| View {
            x0,
            y0,
            flip,
            ..View::identity(4)
        };
        render(&img, &view(0.0, 0.0, false), &cfg, &mut out);
        assert!((out[1] - 10.0).abs() < 1e-3); // (x 1, y 0)
        render(&img, &view(0.0, 0.0, true), &cfg, &mut out);
        assert!((out[0] - 30.0).abs() < 1e-3); // mirrored: x 3
        render(&img, &view(1.0, 2.0, false), &cfg, &mut out);
        assert!((out[0] - 12.0).abs() < 1e-3); // x 0+1, y 0+2
        render(&img, &view(-4.0, 0.0, false), &cfg, &mut out);
        assert!((out[5] - 1.0).abs() < 1e-3); // x clamps to 0, y 1
    }

    #[test]
    fn a_crop_magnifies_its_box() {
        // The left half of a horizontal ramp, stretched to the full width: the ramp's slope halves.
        let img = gradient(32);
        let v = View {
            w: 16.0,
            ..View::identity(32)
        };
        let out = pixels(&img, &v);
        let std = PreprocessConfig::clip(32).std[0];
        let step = (out[10] - out[9]) * std * 255.0;
        assert!((step - 4.0).abs() < 1e-3, "{step}");
        // Its right edge is the box's, not the image's.
        assert!(out[31] * std * 255.0 + PreprocessConfig::clip(32).mean[0] * 255.0 < 16.0 * 8.0);
    }

    #[test]
    fn colour_factors_of_one_change_nothing_and_others_do() {
        let mut rgb: Vec<f32> = (0..30).map(|i| i as f32 / 30.0).collect();
        let before = rgb.clone();
        jitter(&mut rgb, [1.0; 3]);
        let d = worst(&rgb, &before);
        assert!(d < 1e-6, "{d}");
        // Zero saturation leaves each pixel grey; zero contrast leaves the mean grey everywhere.
        jitter(&mut rgb, [1.0, 1.0, 0.0]);
        assert!(rgb
            .chunks(3)
            .all(|p| (p[0] - p[1]).abs() < 1e-6 && (p[1] - p[2]).abs() < 1e-6));
        let mut flat = before.clone();
        jitter(&mut flat, [1.0, 0.0, 1.0]);
        assert!(flat.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-6));
    }

    #[test]
    fn drawn_views_stay_within_their_ranges() {
        let mut rng = Rng::new(7);
        let mut flips = 0;
        for _ in 0..2000 {
            let v = View::draw(Augment::Crop, 32, &mut rng);
            let area = v.w * v.h / (32.0 * 32.0);
            assert!((0.35 * (1.0 - 1e-4)..=1.0 + 1e-6).contains(&area), "{v:?}");
            assert!(v.x0 >= 0.0 && v.x0 + v.w <= 32.0 + 1e-4, "{v:?}");
            assert!(v.y0 >= 0.0 && v.y0 + v.h <= 32.0 + 1e-4, "{v:?}");
            assert!(v.colour.iter().all(|c| (0.6..=1.4).contains(c)), "{v:?}");
            flips += v.flip as usize;
        }
        assert!((800..1200).contains(&flips), "{flips}");
        // Shift draws exactly one number, as the demo recipe always has.
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        let v = View::draw(Augment::Shift, 32, &mut a);
        b.next_u64();
        assert_eq!(a.next_u64(), b.next_u64());
        assert!(v.x0.abs() <= 4.0 && v.y0.abs() <= 4.0 && v.w == 32.0);
        assert_eq!(View::draw(Augment::None, 32, &mut a), View::identity(32));
    }
}
