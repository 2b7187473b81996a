//! CLIP image preprocessing that reproduces Hugging Face's PIL-backed `CLIPImageProcessor`
//! (called `CLIPImageProcessorPil` from transformers 5 on) pixel for pixel, so that embeddings
//! computed here equal the ones the Python reference computes from the same file.
//!
//! The pipeline is the processor's: convert to RGB, resize so the shortest side is
//! `shortest_edge` with Pillow's bicubic filter, centre-crop to `crop_size` (padding with black
//! when the image is smaller), rescale by 1/255, normalise with mean/std, lay out as CHW `f32`.
//!
//! Fidelity, as checked by `tests/integration/preprocess.rs` against fixtures made by
//! `tools/reference/make_pixels.py` (transformers 5.24, Pillow 13.0):
//! - PNG, GIF, BMP and WebP (lossless and lossy) inputs give the same `u8` pixels as the
//!   reference, and therefore the same floats;
//! - JPEG inputs differ slightly because Pillow decodes with libjpeg-turbo and the `image` crate
//!   with zune-jpeg (the test states the measured tolerance);
//! - the resize itself is bit-exact with Pillow's `ImagingResample` for 8-bit images.
//!
//! Transparency (an alpha channel or a PNG/GIF transparency key) is composited over white, as
//! transformers 5's `convert_to_rgb` does; transformers 4 dropped alpha instead, so images with
//! transparency preprocess differently under 4.x. EXIF orientation is not applied, like
//! `PIL.Image.open`.
//!
//! Everything here is plain computation on byte slices: no files, no threads, so it builds for
//! `wasm32-unknown-unknown` unchanged.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// The largest image (width × height) [`decode_rgb`] accepts, 100 megapixels.
///
/// Anything with more pixels is refused from its header alone, before pixel memory is
/// allocated, whatever the aspect ratio. 100 MP covers an 8000×8000 scan or a 108 MP phone photo
/// while keeping the worst decode buffer (16-bit RGBA, 800 MB) inside a 32-bit wasm address
/// space.
pub const MAX_PIXELS: u64 = 100_000_000;

/// Budget handed to the `image` decoders for their own allocations: the largest legal frame at
/// 8 bytes per pixel plus headroom for compressed chunks and palettes.
const MAX_DECODER_ALLOC: u64 = MAX_PIXELS * 8 + (64 << 20);

/// CLIP's normalisation constants as the processor config spells them; kept as `f64` and
/// narrowed once, which is what `np.array(mean, dtype=np.float32)` does.
const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Pillow's fixed-point precision for 8-bit resampling (`32 - 8 - 2`): room for 8-bit samples,
/// a sign bit and the overshoot of negative filter lobes in an `i32` accumulator.
const PRECISION_BITS: u32 = 22;

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("no image data: the input is empty")]
    Empty,
    #[error("not a supported image: the data is not PNG, JPEG, WebP, GIF or BMP")]
    UnsupportedFormat,
    #[error("could not decode the {format:?} image: {source}")]
    Decode {
        format: ImageFormat,
        #[source]
        source: image::ImageError,
    },
    #[error(
        "image is too large: {width}x{height} is {pixels} pixels, the limit is {limit} pixels"
    )]
    TooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("image has zero size ({width}x{height})")]
    ZeroSized { width: u32, height: u32 },
    #[error(
        "pixel buffer length mismatch: a {width}x{height} RGBA image needs {expected} bytes, got {actual}"
    )]
    BufferLength {
        width: u32,
        height: u32,
        expected: u64,
        actual: usize,
    },
    #[error("invalid preprocessing config: {0}")]
    InvalidConfig(String),
}

/// The subset of `preprocessor_config.json` that CLIP checkpoints actually vary.
///
/// Resampling is always bicubic and the rescale factor always 1/255: every CLIP checkpoint on the
/// Hub uses those, and the exactness claims above only hold for them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreprocessConfig {
    pub shortest_edge: u32,
    pub crop_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl PreprocessConfig {
    /// CLIP's statistics at another resolution, for the small test models (32 px) as well as
    /// the real ones (224, 336).
    pub fn clip(image_size: u32) -> Self {
        Self {
            shortest_edge: image_size,
            crop_size: image_size,
            mean: CLIP_MEAN.map(|m| m as f32),
            std: CLIP_STD.map(|s| s as f32),
        }
    }

    /// Rejects configs that would make the pipeline panic or produce infinities, so that a bad
    /// user-supplied JSON file surfaces as an error instead.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        if self.shortest_edge == 0 || self.crop_size == 0 {
            return Err(PreprocessError::InvalidConfig(format!(
                "shortest_edge ({}) and crop_size ({}) must be positive",
                self.shortest_edge, self.crop_size
            )));
        }
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !s.is_finite() || *s == 0.0)
        {
            return Err(PreprocessError::InvalidConfig(format!(
                "mean {:?} must be finite and std {:?} finite and non-zero",
                self.mean, self.std
            )));
        }
        Ok(())
    }
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self::clip(224)
    }
}

fn decoder_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = None;
    limits.max_image_height = None;
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    limits
}

fn check_dimensions(width: u32, height: u32) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::ZeroSized { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            pixels,
            limit: MAX_PIXELS,
        });
    }
    Ok(())
}

/// Decodes PNG, JPEG, WebP, GIF (first frame) or BMP bytes to 8-bit RGB the way the reference
/// does (`PIL.Image.open` followed by transformers' `convert_to_rgb`).
///
/// The format is sniffed from the content, never from a file name. The dimensions are read from
/// the header and checked against [`MAX_PIXELS`] before any pixel buffer exists, so a forged
/// header cannot make us allocate gigabytes.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| PreprocessError::UnsupportedFormat)?;
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
    ) {
        return Err(PreprocessError::UnsupportedFormat);
    }
    let decode_err = |source| PreprocessError::Decode { format, source };

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits());
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height)?;
    let decoded = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    Ok(to_rgb_like_pil(decoded))
}

/// Blends one sample over white with alpha `a`, with the exact integer arithmetic of Pillow's
/// `alpha_composite` for an opaque white backdrop (which reduces to `c·a + 255·(255−a)` divided
/// by 255 with rounding). transformers 5 composites every image that has alpha or a
/// transparency key this way; fully opaque pixels come out unchanged.
#[inline]
fn over_white(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    let t = c * a + 255 * (255 - a) + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// RGB conversion matching what the reference does per decoded colour type.
///
/// Pillow keeps only the high byte of 16-bit RGB(A) and grey+alpha PNGs, but opens 16-bit grey
/// as mode `I;16`, whose conversion to RGB *clips* each value to 255 rather than scaling it;
/// that quirk is reproduced so that such files score as they do in Python.
fn to_rgb_like_pil(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from_fn = |f: &dyn Fn(usize, &mut [u8])| {
        let mut out = vec![0u8; w as usize * h as usize * 3];
        for (i, px) in out.chunks_exact_mut(3).enumerate() {
            f(i, px);
        }
        RgbImage::from_raw(w, h, out).expect("buffer sized for the image")
    };
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => {
            let s = rgba.as_raw();
            from_fn(&|i, px| {
                let a = s[i * 4 + 3];
                for c in 0..3 {
                    px[c] = over_white(s[i * 4 + c], a);
                }
            })
        }
        DynamicImage::ImageLuma8(l) => {
            let s = l.as_raw();
            from_fn(&|i, px| px.fill(s[i]))
        }
        DynamicImage::ImageLumaA8(la) => {
            let s = la.as_raw();
            from_fn(&|i, px| px.fill(over_white(s[i * 2], s[i * 2 + 1])))
        }
        DynamicImage::ImageLuma16(l) => {
            let s = l.as_raw();
            from_fn(&|i, px| px.fill(s[i].min(255) as u8))
        }
        DynamicImage::ImageLumaA16(la) => {
            let s = la.as_raw();
            from_fn(&|i, px| px.fill(over_white((s[i * 2] >> 8) as u8, (s[i * 2 + 1] >> 8) as u8)))
        }
        DynamicImage::ImageRgb16(rgb) => {
            let s = rgb.as_raw();
            from_fn(&|i, px| {
                for c in 0..3 {
                    px[c] = (s[i * 3 + c] >> 8) as u8;
                }
            })
        }
        DynamicImage::ImageRgba16(rgba) => {
            let s = rgba.as_raw();
            from_fn(&|i, px| {
                let a = (s[i * 4 + 3] >> 8) as u8;
                for c in 0..3 {
                    px[c] = over_white((s[i * 4 + c] >> 8) as u8, a);
                }
            })
        }
        // Float images only come from HDR/EXR decoders, which are not enabled.
        other => other.to_rgb8(),
    }
}

/// Turns browser canvas `ImageData` (non-premultiplied RGBA) into the RGB image the reference
/// would get from the same picture as a file: transparent areas are composited over white.
pub fn rgba_to_rgb(width: u32, height: u32, rgba: &[u8]) -> Result<RgbImage, PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::ZeroSized { width, height });
    }
    let expected = u64::from(width) * u64::from(height) * 4;
    if rgba.len() as u64 != expected {
        return Err(PreprocessError::BufferLength {
            width,
            height,
            expected,
            actual: rgba.len(),
        });
    }
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = px[3];
        out.extend_from_slice(&[
            over_white(px[0], a),
            over_white(px[1], a),
            over_white(px[2], a),
        ]);
    }
    Ok(RgbImage::from_raw(width, height, out).expect("length checked above"))
}

// ---------------------------------------------------------------------------------------------
// Resampling: a re-implementation of Pillow's ImagingResample (libImaging/Resample.c) for 8-bit
// images with the bicubic filter. Kept bit-exact: same double-precision coefficient maths, same
// fixed-point rounding, same choice of which pass runs first, same intermediate clipping.

/// Pillow's bicubic kernel (Keys, a = −0.5), written with the same operation order so the
/// doubles, and hence the rounded fixed-point weights, come out identical.
#[inline]
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point filter taps for a run of consecutive output positions along one axis.
struct AxisCoeffs {
    /// Taps per output position (Pillow's `ksize`); weights are stored at this stride.
    stride: usize,
    /// First input index and number of taps, per output position.
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl AxisCoeffs {
    #[inline]
    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, len) = self.bounds[i];
        (start, &self.weights[i * self.stride..i * self.stride + len])
    }

    /// Input indices `[first, last)` that outputs of this run read.
    fn input_span(&self) -> (usize, usize) {
        let first = self.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = self.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        (first, last)
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`, for outputs `[out0, out0 + count)` of
/// an axis resized from `in_size` to `out_size` (only a run is needed when the caller crops).
///
/// On downscaling the kernel is stretched by the scale factor (antialiasing); each output's
/// weights are normalised to sum to one, then scaled by 2^22 and rounded half away from zero.
fn axis_coeffs(in_size: u64, out_size: u64, out0: u64, count: usize) -> AxisCoeffs {
    // Pillow holds the box in `float`, and computes in double from there.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = 2.0 * filterscale;
    let stride = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;

    let mut bounds = Vec::with_capacity(count);
    let mut weights = vec![0i32; count * stride];
    let mut k = vec![0f64; stride];
    for i in 0..count {
        let xx = out0 + i as u64;
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; negatives are clamped right after anyway.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let len = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k[..len].iter_mut().enumerate() {
            let w = bicubic(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[i * stride..i * stride + len];
        for (dst, &w) in row.iter_mut().zip(&k[..len]) {
            let w = if ww != 0.0 { w / ww } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin as usize, len));
    }
    AxisCoeffs {
        stride,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: drop the fraction bits and saturate to a byte.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const ROUND_HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass. `src` is an RGB buffer `src_width` pixels wide whose first column is input
/// column `col_offset`; its rows `[row0, row1)` are filtered into `cols.bounds.len()` columns.
fn resample_horizontal(
    src: &[u8],
    src_width: usize,
    col_offset: usize,
    row0: usize,
    row1: usize,
    cols: &AxisCoeffs,
) -> Vec<u8> {
    let in_stride = src_width * 3;
    let out_w = cols.bounds.len();
    let mut out = vec![0u8; out_w * 3 * (row1 - row0)];
    for (y, out_row) in (row0..row1).zip(out.chunks_exact_mut(out_w * 3)) {
        let in_row = &src[y * in_stride..(y + 1) * in_stride];
        for (x, px) in out_row.chunks_exact_mut(3).enumerate() {
            let (start, k) = cols.taps(x);
            let start = start - col_offset;
            let window = &in_row[start * 3..(start + k.len()) * 3];
            let (mut r, mut g, mut b) = (ROUND_HALF, ROUND_HALF, ROUND_HALF);
            for (p, &w) in window.chunks_exact(3).zip(k) {
                r += i32::from(p[0]) * w;
                g += i32::from(p[1]) * w;
                b += i32::from(p[2]) * w;
            }
            px[0] = clip8(r);
            px[1] = clip8(g);
            px[2] = clip8(b);
        }
    }
    out
}

/// Vertical pass. `src` is an RGB buffer `src_width` pixels wide whose first row is input row
/// `row_offset`; its columns `[col0, col0 + out_w)` are filtered into `rows.bounds.len()` rows.
fn resample_vertical(
    src: &[u8],
    src_width: usize,
    row_offset: usize,
    col0: usize,
    out_w: usize,
    rows: &AxisCoeffs,
) -> Vec<u8> {
    let n = out_w * 3;
    let mut out = vec![0u8; n * rows.bounds.len()];
    let mut acc = vec![0i32; n];
    for (y, out_row) in out.chunks_exact_mut(n.max(1)).enumerate() {
        let (start, k) = rows.taps(y);
        acc.fill(ROUND_HALF);
        // Row-major accumulation visits memory sequentially; integer sums are exact, so the order
        // differs from Pillow's per-pixel loop without changing any result.
        for (j, &w) in k.iter().enumerate() {
            let r = start + j - row_offset;
            let in_row = &src[(r * src_width + col0) * 3..][..n];
            for (a, &p) in acc.iter_mut().zip(in_row) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Window of a (virtual) resized image: `[x0, x0 + w) × [y0, y0 + h)`.
#[derive(Clone, Copy, Debug)]
struct Region {
    x0: u64,
    y0: u64,
    w: u32,
    h: u32,
}

/// Which separable pass Pillow runs first.
///
/// Pillow 13 runs the vertical pass first when it shrinks the height and `2·(out_w − in_w) >
/// out_h − in_h`, otherwise horizontal first. The order matters because the intermediate image
/// is clipped to `u8`. The rule was established by black-box comparison (2,000 random and
/// boundary cases, all bit-exact) since only the compiled library is at hand; the fixtures made
/// by `tools/reference/make_pixels.py` recheck it.
fn vertical_first(in_w: u64, in_h: u64, out_w: u64, out_h: u64) -> bool {
    out_h < in_h && 2 * out_w as i128 + in_h as i128 > 2 * in_w as i128 + out_h as i128
}

/// Pillow's `ImagingResample` (bicubic, 8-bit), restricted to one window of the output.
///
/// Each output pixel depends only on its own taps, so computing a window gives exactly the
/// pixels the full resize would have there; the preprocessing pipeline uses this to resize only
/// what the centre crop keeps (and so never materialises huge resized images).
///
/// As in Pillow, the first pass only computes the lines the second pass reads, its output is
/// clipped to `u8`, and an axis whose size does not change is not filtered at all.
fn resample_region(img: &RgbImage, out_w: u64, out_h: u64, region: Region) -> RgbImage {
    let (in_w, in_h) = (u64::from(img.width()), u64::from(img.height()));
    assert!(
        in_w > 0 && in_h > 0,
        "cannot resize an empty {in_w}x{in_h} image"
    );
    assert!(
        out_w > 0 && out_h > 0,
        "cannot resize to an empty {out_w}x{out_h} image"
    );
    assert!(
        region.x0 + u64::from(region.w) <= out_w && region.y0 + u64::from(region.h) <= out_h,
        "region {region:?} outside the {out_w}x{out_h} output"
    );
    let (w, h) = (region.w as usize, region.h as usize);
    let (x0, y0) = (region.x0 as usize, region.y0 as usize);
    let src = img.as_raw();
    let src_w = in_w as usize;

    let out = match (out_w != in_w, out_h != in_h) {
        (false, false) => image::imageops::crop_imm(img, x0 as u32, y0 as u32, region.w, region.h)
            .to_image()
            .into_raw(),
        (true, false) => {
            let cols = axis_coeffs(in_w, out_w, region.x0, w);
            resample_horizontal(src, src_w, 0, y0, y0 + h, &cols)
        }
        (false, true) => {
            let rows = axis_coeffs(in_h, out_h, region.y0, h);
            resample_vertical(src, src_w, 0, x0, w, &rows)
        }
        (true, true) => {
            let cols = axis_coeffs(in_w, out_w, region.x0, w);
            let rows = axis_coeffs(in_h, out_h, region.y0, h);
            if vertical_first(in_w, in_h, out_w, out_h) {
                let (c0, c1) = cols.input_span();
                let tmp = resample_vertical(src, src_w, 0, c0, c1 - c0, &rows);
                resample_horizontal(&tmp, c1 - c0, c0, 0, h, &cols)
            } else {
                let (r0, r1) = rows.input_span();
                let tmp = resample_horizontal(src, src_w, 0, r0, r1, &cols);
                resample_vertical(&tmp, w, r0, 0, w, &rows)
            }
        }
    };
    RgbImage::from_raw(region.w, region.h, out).expect("buffer sized for the region")
}

/// Resizes with Pillow's `Image.resize(..., resample=BICUBIC)` semantics, bit for bit.
///
/// # Panics
/// If the image or the requested size is empty (Pillow raises there too).
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if (width, height) == img.dimensions() {
        return img.clone();
    }
    let region = Region {
        x0: 0,
        y0: 0,
        w: width,
        h: height,
    };
    resample_region(img, u64::from(width), u64::from(height), region)
}

/// Output size of transformers' `get_resize_output_image_size(..., default_to_square=False)`:
/// the short side becomes `shortest_edge`, the long side `int(shortest_edge * long / short)`.
///
/// Returned as `u64` because extreme aspect ratios can overflow `u32` (the pipeline still copes,
/// as it only computes the cropped window). Integer floor division equals Python's float
/// expression whenever `shortest_edge * long < 2^53`; beyond that the float path is mirrored.
pub fn shortest_edge_size(width: u32, height: u32, shortest_edge: u32) -> (u64, u64) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let product = u64::from(shortest_edge) * u64::from(long);
    let new_long = if product < (1 << 53) {
        product / u64::from(short.max(1))
    } else {
        (product as f64 / f64::from(short)) as u64
    };
    let new_short = u64::from(shortest_edge);
    if width <= height {
        (new_short, new_long)
    } else {
        (new_long, new_short)
    }
}

fn size_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or_else(|_| panic!("resized side of {v} pixels does not fit in u32"))
}

/// Resizes so the shorter side equals `shortest_edge`, keeping the aspect ratio the way
/// transformers rounds it (long side truncated).
///
/// # Panics
/// If the image is empty, `shortest_edge` is zero, or the long side would exceed `u32::MAX`.
pub fn resize_shortest_edge(img: &RgbImage, shortest_edge: u32) -> RgbImage {
    let (w, h) = shortest_edge_size(img.width(), img.height(), shortest_edge);
    resize_bicubic(img, size_u32(w), size_u32(h))
}

/// Crop window along one axis as transformers' `center_crop` places it: `(start in the source,
/// start in the output, length)`. Cropping floors the offset; padding (when the source is
/// shorter than the crop) centres the source with the extra pixel on the leading side.
fn crop_axis(orig: u64, crop: u32) -> (u64, u32, u32) {
    let crop64 = u64::from(crop);
    if crop64 <= orig {
        ((orig - crop64) / 2, 0, crop)
    } else {
        let pad = (crop64 - orig).div_ceil(2);
        (0, pad as u32, orig as u32)
    }
}

/// Places `inner` at `(dx, dy)` in a black `size`×`size` image, as the zero padding of
/// transformers' `center_crop` does.
fn pad_to_square(inner: RgbImage, size: u32, dx: u32, dy: u32) -> RgbImage {
    if inner.dimensions() == (size, size) {
        return inner;
    }
    let mut out = RgbImage::new(size, size);
    let row_len = inner.width() as usize * 3;
    let out_stride = size as usize * 3;
    let raw = out.as_mut();
    for (y, src_row) in inner.as_raw().chunks_exact(row_len.max(1)).enumerate() {
        let start = (dy as usize + y) * out_stride + dx as usize * 3;
        raw[start..start + row_len].copy_from_slice(src_row);
    }
    out
}

/// Centre crop to `size`×`size` as transformers does it, including zero (black) padding on
/// any side shorter than `size`.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (sx, dx, w) = crop_axis(u64::from(img.width()), size);
    let (sy, dy, h) = crop_axis(u64::from(img.height()), size);
    let inner = image::imageops::crop_imm(img, sx as u32, sy as u32, w, h).to_image();
    pad_to_square(inner, size, dx, dy)
}

/// Rescale by 1/255 and normalise, into CHW `f32`, with the reference's exact rounding: the
/// rescale is computed in `f64` and narrowed (transformers' `rescale`), the normalisation in
/// `f32` (`normalize` on a float32 array).
pub fn to_tensor_chw(img: &RgbImage, cfg: &PreprocessConfig) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; 3 * plane];
    // Same double as the config's `rescale_factor` 0.00392156862745098.
    let scale = 1.0f64 / 255.0;
    let lut: [[f32; 256]; 3] = std::array::from_fn(|c| {
        std::array::from_fn(|v| ((v as f64 * scale) as f32 - cfg.mean[c]) / cfg.std[c])
    });
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = lut[c][px[c] as usize];
        }
    }
    out
}

/// The resized-and-cropped `u8` image the model sees, before rescaling: equal to
/// `center_crop(&resize_shortest_edge(img, e), c)` but only the kept window is resampled.
///
/// # Panics
/// If the image is empty or the sizes in `cfg` are zero; see [`PreprocessConfig::validate`].
pub fn resize_and_crop(img: &RgbImage, cfg: &PreprocessConfig) -> RgbImage {
    assert!(
        cfg.shortest_edge > 0 && cfg.crop_size > 0,
        "shortest_edge and crop_size must be positive"
    );
    let (out_w, out_h) = shortest_edge_size(img.width(), img.height(), cfg.shortest_edge);
    let (x0, dx, w) = crop_axis(out_w, cfg.crop_size);
    let (y0, dy, h) = crop_axis(out_h, cfg.crop_size);
    let inner = resample_region(img, out_w, out_h, Region { x0, y0, w, h });
    pad_to_square(inner, cfg.crop_size, dx, dy)
}

/// The whole pipeline on an RGB image: `3 × crop_size × crop_size` floats, CHW.
///
/// # Panics
/// As [`resize_and_crop`].
pub fn preprocess_rgb(img: &RgbImage, cfg: &PreprocessConfig) -> Vec<f32> {
    to_tensor_chw(&resize_and_crop(img, cfg), cfg)
}

/// The whole pipeline on encoded image bytes; never panics on bad input.
pub fn preprocess_bytes(bytes: &[u8], cfg: &PreprocessConfig) -> Result<Vec<f32>, PreprocessError> {
    cfg.validate()?;
    let img = decode_rgb(bytes)?;
    Ok(preprocess_rgb(&img, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random_image(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        RgbImage::from_fn(w, h, |_, _| {
            let mut next = || {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            };
            image::Rgb([next(), next(), next()])
        })
    }

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, format).unwrap();
        buf.into_inner()
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([12, 200, 255]));
        for (w, h) in [(224, 224), (5, 3), (100, 7), (37, 400), (1, 1)] {
            let out = resize_bicubic(&img, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [12, 200, 255]), "{w}x{h}");
        }
    }

    #[test]
    fn identity_size_is_a_copy() {
        let img = pseudo_random_image(31, 17, 1);
        assert_eq!(resize_bicubic(&img, 31, 17), img);
        // Pillow skips the pass of an axis whose size is unchanged; filtering it would not
        // change anything either, since the identity taps are exactly 1.0 in fixed point.
        let cols = axis_coeffs(31, 31, 0, 31);
        assert_eq!(
            &resample_horizontal(img.as_raw(), 31, 0, 0, 17, &cols),
            img.as_raw()
        );
    }

    #[test]
    fn weights_are_normalised_in_fixed_point() {
        for (i, o) in [(8000u64, 224u64), (224, 8000), (5, 224), (257, 256), (3, 1)] {
            let c = axis_coeffs(i, o, 0, o as usize);
            for n in 0..o as usize {
                let (start, k) = c.taps(n);
                assert!(start + k.len() <= i as usize);
                let sum: i64 = k.iter().map(|&w| i64::from(w)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= k.len() as i64,
                    "{i}->{o} at {n}"
                );
            }
        }
    }

    #[test]
    fn pass_order_rule() {
        // Found by comparing against Pillow 13; boundary cases are in the resize fixtures.
        assert!(!vertical_first(30, 20, 25, 10));
        assert!(vertical_first(30, 21, 25, 10));
        assert!(!vertical_first(100, 100, 55, 10));
        assert!(vertical_first(100, 100, 56, 10));
        assert!(
            !vertical_first(10, 10, 400, 11),
            "never when the height grows"
        );
        // The CLIP resize of typical photos runs horizontally first...
        assert!(!vertical_first(500, 375, 298, 224));
        assert!(!vertical_first(256, 341, 224, 298));
        // ...unless the image is more than about twice as tall as wide.
        assert!(vertical_first(300, 700, 224, 522));
    }

    #[test]
    fn bicubic_kernel_values() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(-1.5), -0.0625);
    }

    #[test]
    fn shortest_edge_rounding_follows_python_int() {
        // int(224 * 500 / 375) = int(298.66..) = 298
        assert_eq!(shortest_edge_size(500, 375, 224), (298, 224));
        assert_eq!(shortest_edge_size(375, 500, 224), (224, 298));
        assert_eq!(shortest_edge_size(5, 3, 224), (373, 224));
        assert_eq!(shortest_edge_size(64, 64, 32), (32, 32));
        assert_eq!(
            shortest_edge_size(1, 100_000_000, 224),
            (224, 22_400_000_000)
        );
    }

    #[test]
    fn crop_offsets_floor_and_padding_centres_with_ceil() {
        assert_eq!(crop_axis(298, 224), (37, 0, 224));
        assert_eq!(crop_axis(299, 224), (37, 0, 224));
        assert_eq!(crop_axis(225, 224), (0, 0, 224));
        assert_eq!(crop_axis(5, 224), (0, 110, 5));
        assert_eq!(crop_axis(6, 9), (0, 2, 6));

        let img = pseudo_random_image(7, 5, 2);
        let c = center_crop(&img, 3);
        assert_eq!(c.get_pixel(0, 0), img.get_pixel(2, 1));
        // Too small on one side: padded there, cropped on the other.
        let c = center_crop(&img, 6);
        assert_eq!(c.dimensions(), (6, 6));
        assert_eq!(c.get_pixel(0, 1), img.get_pixel(0, 0));
        assert_eq!(c.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(c.get_pixel(5, 5), img.get_pixel(5, 4));
        assert_eq!(c.get_pixel(5, 1), img.get_pixel(5, 0));
    }

    #[test]
    fn fused_resize_crop_equals_resize_then_crop() {
        for (w, h, seed) in [
            (61, 40, 3),
            (40, 61, 4),
            (5, 3, 5),
            (300, 300, 6),
            (32, 50, 7),
        ] {
            let img = pseudo_random_image(w, h, seed);
            for cfg in [
                PreprocessConfig::clip(32),
                PreprocessConfig::clip(224),
                PreprocessConfig {
                    shortest_edge: 20,
                    crop_size: 27,
                    ..PreprocessConfig::clip(1)
                },
            ] {
                let full = resize_shortest_edge(&img, cfg.shortest_edge);
                assert_eq!(
                    resize_and_crop(&img, &cfg),
                    center_crop(&full, cfg.crop_size),
                    "{w}x{h} {cfg:?}"
                );
            }
        }
    }

    #[test]
    fn tensor_layout_and_values() {
        let img = RgbImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                image::Rgb([0, 128, 255])
            } else {
                image::Rgb([255, 0, 0])
            }
        });
        let cfg = PreprocessConfig::default();
        let t = to_tensor_chw(&img, &cfg);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0], (0.0 - cfg.mean[0]) / cfg.std[0]);
        assert_eq!(t[1], (1.0 - cfg.mean[0]) / cfg.std[0]);
        assert_eq!(t[2], ((128.0f64 / 255.0) as f32 - cfg.mean[1]) / cfg.std[1]);
        assert_eq!(t[4], (1.0 - cfg.mean[2]) / cfg.std[2]);
        assert_eq!(
            preprocess_rgb(&img, &PreprocessConfig::clip(32)).len(),
            3 * 32 * 32
        );
    }

    #[test]
    fn config_round_trips_and_validates() {
        let cfg = PreprocessConfig::clip(336);
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(
            serde_json::from_str::<PreprocessConfig>(&json).unwrap(),
            cfg
        );
        assert_eq!(PreprocessConfig::default(), PreprocessConfig::clip(224));
        assert!(PreprocessConfig::clip(0).validate().is_err());
        let bad = PreprocessConfig {
            std: [1.0, 0.0, 1.0],
            ..cfg
        };
        assert!(matches!(
            preprocess_bytes(b"x", &bad),
            Err(PreprocessError::InvalidConfig(_))
        ));
    }

    #[test]
    fn rgba_length_and_alpha() {
        let err = rgba_to_rgb(2, 2, &[0; 15]).unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::BufferLength {
                    expected: 16,
                    actual: 15,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("16"));
        assert!(matches!(
            rgba_to_rgb(0, 2, &[]),
            Err(PreprocessError::ZeroSized { .. })
        ));
        let img = rgba_to_rgb(3, 1, &[10, 20, 30, 255, 10, 20, 30, 0, 0, 0, 0, 128]).unwrap();
        assert_eq!(img.as_raw(), &[10, 20, 30, 255, 255, 255, 127, 127, 127]);
    }

    #[test]
    fn over_white_extremes() {
        for c in 0..=255u8 {
            assert_eq!(over_white(c, 255), c);
            assert_eq!(over_white(c, 0), 255);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cfg = PreprocessConfig::default();
        assert!(matches!(decode_rgb(&[]), Err(PreprocessError::Empty)));
        assert!(matches!(
            decode_rgb(b"hello, this is text"),
            Err(PreprocessError::UnsupportedFormat)
        ));
        let png = encode(
            &DynamicImage::ImageRgb8(pseudo_random_image(20, 20, 8)),
            ImageFormat::Png,
        );
        for cut in [8, 20, 40, png.len() / 2, png.len() - 13] {
            assert!(
                preprocess_bytes(&png[..cut], &cfg).is_err(),
                "truncated at {cut}"
            );
        }
        let mut seed = 99u32;
        for len in [1, 2, 16, 100, 1000] {
            for magic in [
                &b"\x89PNG\r\n\x1a\n"[..],
                b"\xff\xd8\xff",
                b"GIF89a",
                b"BM",
                b"RIFF\0\0\0\0WEBPVP8L",
            ] {
                let mut bytes = magic.to_vec();
                bytes.extend((0..len).map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                }));
                // Must not panic; an error is expected but a lucky decode would be fine too.
                let _ = preprocess_bytes(&bytes, &cfg);
            }
        }
    }

    /// A minimal PNG with a forged IHDR; the CRCs are real so the decoder reaches the size check.
    fn png_with_header(width: u32, height: u32) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
            out.extend((data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend(data);
            out.extend(&body);
            out.extend(crc32(&body).to_be_bytes());
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(width.to_be_bytes());
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        // A stored (uncompressed) zlib stream with one byte: not enough data for the image.
        chunk(
            &mut png,
            b"IDAT",
            &[
                0x78, 0x01, 0x01, 0x01, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01, 0x00, 0x01,
            ],
        );
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn forged_huge_header_is_refused_before_allocating() {
        // 100000 x 100000 RGB would be 30 GB; refused from the header.
        match decode_rgb(&png_with_header(100_000, 100_000)) {
            Err(PreprocessError::TooLarge {
                width: 100_000,
                height: 100_000,
                pixels,
                limit,
            }) => {
                assert_eq!(pixels, 10_000_000_000);
                assert_eq!(limit, MAX_PIXELS);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let msg = decode_rgb(&png_with_header(100_000, 100_000))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("100000x100000") && msg.contains("100000000"),
            "{msg}"
        );
        // Just under the limit in pixels but absurdly shaped is still judged by area...
        assert!(matches!(
            decode_rgb(&png_with_header(1, 100_000_001)),
            Err(PreprocessError::TooLarge { .. })
        ));
        // ...and a legal size with missing data is a decode error, not a panic.
        assert!(matches!(
            decode_rgb(&png_with_header(4, 4)),
            Err(PreprocessError::Decode { .. })
        ));
    }

    #[test]
    fn decodes_colour_types_like_pil() {
        let rgb = pseudo_random_image(9, 6, 10);
        let png = encode(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Png);
        assert_eq!(decode_rgb(&png).unwrap(), rgb);
        let bmp = encode(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Bmp);
        assert_eq!(decode_rgb(&bmp).unwrap(), rgb);

        let grey = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 60 + y) as u8]));
        let out = decode_rgb(&encode(
            &DynamicImage::ImageLuma8(grey.clone()),
            ImageFormat::Png,
        ))
        .unwrap();
        assert!(out
            .enumerate_pixels()
            .all(|(x, y, p)| p.0 == [grey.get_pixel(x, y).0[0]; 3]));

        // 16-bit RGB keeps the high byte; 16-bit grey clips at 255 (PIL's I;16 -> RGB).
        let rgb16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(2, 1, |x, _| {
            image::Rgb([0x12ff, 0xff00, x as u16])
        });
        let out = decode_rgb(&encode(&DynamicImage::ImageRgb16(rgb16), ImageFormat::Png)).unwrap();
        assert_eq!(out.as_raw(), &[0x12, 0xff, 0, 0x12, 0xff, 0]);
        let l16 =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 1, vec![7, 255, 300]).unwrap();
        let out = decode_rgb(&encode(&DynamicImage::ImageLuma16(l16), ImageFormat::Png)).unwrap();
        assert_eq!(out.as_raw(), &[7, 7, 7, 255, 255, 255, 255, 255, 255]);

        // Alpha is composited over white.
        let rgba = image::RgbaImage::from_raw(2, 1, vec![0, 0, 0, 0, 100, 50, 0, 255]).unwrap();
        let out = decode_rgb(&encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png)).unwrap();
        assert_eq!(out.as_raw(), &[255, 255, 255, 100, 50, 0]);
    }

    /// A huge image goes through (its time is printed, not asserted: speed lives in benchmarks,
    /// and a timed test fails on a busy machine).
    #[test]
    fn large_downscale_works() {
        let img = RgbImage::from_fn(8000, 8000, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let start = std::time::Instant::now();
        let t = preprocess_rgb(&img, &PreprocessConfig::default());
        let elapsed = start.elapsed();
        assert_eq!(t.len(), 3 * 224 * 224);
        eprintln!("8000x8000 -> 224: {elapsed:?}");
        assert!(t.iter().all(|v| v.is_finite()));
    }
}
