//! Picture styles named in captions, so that a text tower learns to read the words before the
//! class name (docs/TUNING.md).
//!
//! A model trained under caption templates drawn at random, whatever the picture looks like, is
//! rewarded for ignoring those words: the demo model's class features are the same to four
//! decimals whatever stands in the learned-context slots, so prompt tuning has nothing to move.
//! Here the caption says what was done to the picture ("a dark photo of a {}."), and the picture
//! is contrasted with every (style, class) caption, so the style words decide which caption fits.
//! A context learned on pictures of one style can then find the words for it.

use image::RgbImage;

use super::augment::luma;
use crate::rng::Rng;

/// In the order of [`STYLES`]: `style as usize` is its index there, and its captions' in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Grey,
    Dark,
    Bright,
    Blurry,
    Negative,
}

pub const STYLES: [Style; 6] = [
    Style::Plain,
    Style::Grey,
    Style::Dark,
    Style::Bright,
    Style::Blurry,
    Style::Negative,
];

impl Style {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Grey => "grey",
            Self::Dark => "dark",
            Self::Bright => "bright",
            Self::Blurry => "blurry",
            Self::Negative => "negative",
        }
    }

    /// The caption template a picture of this style is trained with. Plain is the hand prompt.
    pub fn template(self) -> &'static str {
        match self {
            Self::Plain => "a photo of a {}.",
            Self::Grey => "a black and white photo of a {}.",
            Self::Dark => "a dark photo of a {}.",
            Self::Bright => "a bright photo of a {}.",
            Self::Blurry => "a blurry photo of a {}.",
            Self::Negative => "a negative photo of a {}.",
        }
    }

    /// Half the pictures plain, the rest one of the other styles each, uniformly: one number.
    pub fn draw(rng: &mut Rng) -> Self {
        let r = rng.next_u64() % (2 * (STYLES.len() as u64 - 1));
        STYLES.get(r as usize + 1).copied().unwrap_or(Self::Plain)
    }

    /// The picture in this style (the same size).
    pub fn apply(self, img: &RgbImage) -> RgbImage {
        let mut out = img.clone();
        let px = |f: &dyn Fn([f32; 3]) -> [f32; 3], out: &mut RgbImage| {
            for p in out.pixels_mut() {
                let v = f(p.0.map(|c| c as f32 / 255.0));
                p.0 = v.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        };
        match self {
            Self::Plain => {}
            Self::Grey => px(&|c| [luma(c); 3], &mut out),
            Self::Dark => px(&|c| c.map(|v| v * 0.3), &mut out),
            Self::Bright => px(&|c| c.map(|v| 0.55 + 0.45 * v), &mut out),
            Self::Negative => px(&|c| c.map(|v| 1.0 - v), &mut out),
            Self::Blurry => {
                // Two 3×3 box blurs (about a Gaussian of σ 1.2 px), edges replicated.
                for _ in 0..2 {
                    out = box_blur(&out);
                }
            }
        }
        out
    }
}

fn box_blur(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let mut sum = [0u32; 3];
        for dy in -1..=1 {
            for dx in -1..=1 {
                let sx = (x as i64 + dx).clamp(0, w - 1) as u32;
                let sy = (y as i64 + dy).clamp(0, h - 1) as u32;
                let p = img.get_pixel(sx, sy).0;
                (0..3).for_each(|c| sum[c] += p[c] as u32);
            }
        }
        image::Rgb(sum.map(|s| ((s + 4) / 9) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_draws_are_plain_and_every_style_comes_up() {
        // A style's index in STYLES is its discriminant, which the count (and training) rely on.
        for (i, &s) in STYLES.iter().enumerate() {
            assert_eq!(s as usize, i);
        }
        let mut rng = Rng::new(3);
        let mut count = [0usize; 6];
        for _ in 0..10_000 {
            let s = Style::draw(&mut rng);
            count[s as usize] += 1;
        }
        assert!((4_700..5_300).contains(&count[0]), "{count:?}");
        assert!(
            count[1..].iter().all(|&c| (800..1_200).contains(&c)),
            "{count:?}"
        );
    }

    #[test]
    fn each_style_does_what_its_caption_says() {
        let img = RgbImage::from_fn(4, 4, |x, _| {
            image::Rgb([200, 100, if x < 2 { 0 } else { 50 }])
        });
        let p = |s: Style| s.apply(&img).get_pixel(0, 0).0;
        assert_eq!(p(Style::Plain), [200, 100, 0]);
        let g = p(Style::Grey);
        assert!(
            g[0] == g[1] && g[1] == g[2] && (118..=119).contains(&g[0]),
            "{g:?}"
        );
        assert_eq!(p(Style::Dark), [60, 30, 0]);
        assert_eq!(p(Style::Negative), [55, 155, 255]);
        assert_eq!(p(Style::Bright), [230, 185, 140]);
        // The blur turns the step in blue between columns 1 and 2 into a ramp.
        let b = Style::Blurry.apply(&img);
        let blue: Vec<u8> = (0..4).map(|x| b.get_pixel(x, 0).0[2]).collect();
        assert!(
            blue[0] < blue[1] && blue[1] < blue[2] && blue[2] < blue[3],
            "{blue:?}"
        );
        assert!(blue[0] > 0 && blue[3] < 50, "{blue:?}");
    }
}
