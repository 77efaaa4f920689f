// Probe for README's "what would close the gap" (issue 10): on one thread, libjpeg-turbo's full
// decode of each JPEG against decoding only a RandomResizedCrop box of it (jpeg_crop_scanline +
// jpeg_skip_scanlines, abort after the box's last row), checking that the box's pixels equal the
// full decode's, and src/data/transforms.ts' antialiased bilinear resampling (box -> 224, float32
// taps and intermediate, double sums) written in C. Boxes follow RandomResizedCrop's distribution
// (libc rand(), not our streams). Not part of the package or of `npm run bench`:
//   gcc -O2 -o /tmp/jpeg_region bench/jpeg_region.c -ljpeg -lm   (libjpeg62-turbo-dev)
//   /tmp/jpeg_region '/path/to/folder/*.jpg'    (500 x 375 JPEGs, as bench/decode.ts generates)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <glob.h>
#include <jpeglib.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
typedef struct { unsigned char *data; size_t size; } File;
static unsigned char *decode(File f, int top, int left, int bh, int bw, int crop, int *outW, int *outX) {
  struct jpeg_decompress_struct c; struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e); jpeg_create_decompress(&c);
  jpeg_mem_src(&c, f.data, f.size); jpeg_read_header(&c, TRUE); c.out_color_space = JCS_RGB;
  jpeg_start_decompress(&c);
  JDIMENSION x = 0, w = c.output_width; int rows = c.output_height, first = 0;
  if (crop) { x = left; w = bw; jpeg_crop_scanline(&c, &x, &w); if (top > 0) jpeg_skip_scanlines(&c, top); first = top; rows = bh; }
  unsigned char *buf = malloc((size_t)w * 3 * rows);
  for (int r = 0; r < rows; r++) { JSAMPROW p = buf + (size_t)r * w * 3; jpeg_read_scanlines(&c, &p, 1); }
  if (crop) jpeg_abort_decompress(&c); else jpeg_finish_decompress(&c);
  jpeg_destroy_decompress(&c); *outW = w; *outX = x; (void)first; return buf;
}
static int taps(int in, int out, int *start, int *count, float *wts, int span) {
  double scale = (double)in / out, support = scale >= 1 ? scale : 1, inv = scale >= 1 ? 1 / scale : 1;
  for (int i = 0; i < out; i++) { double center = scale * (i + 0.5); int lo = (int)(center - support + 0.5); if (lo < 0) lo = 0;
    int hi = (int)(center + support + 0.5); if (hi > in) hi = in; double tot = 0;
    for (int t = 0; t < hi - lo; t++) { double d = fabs((t + lo - center + 0.5) * inv); double w = d < 1 ? 1 - d : 0; wts[i * span + t] = w; tot += w; }
    for (int t = 0; t < hi - lo; t++) wts[i * span + t] = (float)(wts[i * span + t] / tot);
    start[i] = lo; count[i] = hi - lo;
  }
  return 0;
}
static void resample(const unsigned char *px, int stride, int bh, int bw, unsigned char *out) {
  static int hs[224], hc[224], vs[224], vc[224]; static float hw[224 * 16], vw[224 * 16]; static float mid[3 * 2000 * 224];
  int span = 16; taps(bw, 224, hs, hc, hw, span); taps(bh, 224, vs, vc, vw, span);
  int first = vs[0], rows = vs[223] + vc[223] - first, plane = rows * 224;
  for (int r = 0; r < rows; r++) { const unsigned char *row = px + (size_t)(first + r) * stride;
    for (int c = 0; c < 224; c++) { double R = 0, G = 0, B = 0; const unsigned char *s = row + hs[c] * 3; const float *w = hw + c * span;
      for (int t = 0; t < hc[c]; t++, s += 3) { R += w[t] * s[0]; G += w[t] * s[1]; B += w[t] * s[2]; }
      mid[r * 224 + c] = R; mid[plane + r * 224 + c] = G; mid[2 * plane + r * 224 + c] = B; } }
  for (int ch = 0; ch < 3; ch++) for (int r = 0; r < 224; r++) { const float *m = mid + ch * plane + (vs[r] - first) * 224; const float *w = vw + r * span;
    for (int c = 0; c < 224; c++) { double s = 0; for (int t = 0; t < vc[r]; t++) s += w[t] * m[t * 224 + c]; float v = (float)s;
      out[ch * 224 * 224 + r * 224 + c] = v <= 0 ? 0 : v >= 255 ? 255 : (unsigned char)nearbyintf(v); } }
}
int main(int argc, char **argv) {
  glob_t g; glob(argv[1], 0, NULL, &g); int n = g.gl_pathc; File *f = calloc(n, sizeof(File));
  for (int i = 0; i < n; i++) { FILE *h = fopen(g.gl_pathv[i], "rb"); fseek(h, 0, SEEK_END); f[i].size = ftell(h); rewind(h); f[i].data = malloc(f[i].size); fread(f[i].data, 1, f[i].size, h); fclose(h); }
  int *bt = malloc(n * sizeof(int) * 4); srand(1);
  for (int i = 0; i < n; i++) { int H = 375, W = 500; int ok = 0;
    for (int a = 0; a < 10 && !ok; a++) { double area = H * W * (0.08 + 0.92 * rand() / (double)RAND_MAX); double lr = log(3. / 4) + (log(4. / 3) - log(3. / 4)) * rand() / (double)RAND_MAX;
      int w = (int)lround(sqrt(area * exp(lr))), h = (int)lround(sqrt(area / exp(lr)));
      if (w > 0 && w <= W && h > 0 && h <= H) { bt[4 * i] = rand() % (H - h + 1); bt[4 * i + 1] = rand() % (W - w + 1); bt[4 * i + 2] = h; bt[4 * i + 3] = w; ok = 1; } }
    if (!ok) { bt[4 * i] = 0; bt[4 * i + 1] = 0; bt[4 * i + 2] = H; bt[4 * i + 3] = W; } }
  unsigned char *out = malloc(3 * 224 * 224); double best[3] = {1e9, 1e9, 1e9};
  unsigned char **boxes = malloc(n * sizeof(void *)); int *bw_ = malloc(n * sizeof(int)), *bx_ = malloc(n * sizeof(int));
  long differing = 0, compared = 0;
  for (int i = 0; i < n; i++) {
    boxes[i] = decode(f[i], bt[4 * i], bt[4 * i + 1], bt[4 * i + 2], bt[4 * i + 3], 1, &bw_[i], &bx_[i]);
    int W, X; unsigned char *full = decode(f[i], 0, 0, 0, 0, 0, &W, &X);
    for (int r = 0; r < bt[4 * i + 2]; r++) for (int c = 0; c < bt[4 * i + 3] * 3; c++) {
      unsigned char a = full[(size_t)(bt[4 * i] + r) * W * 3 + bt[4 * i + 1] * 3 + c];
      unsigned char b = boxes[i][(size_t)r * bw_[i] * 3 + (bt[4 * i + 1] - bx_[i]) * 3 + c];
      differing += a != b; compared++;
    }
    free(full);
  }
  printf("box decode vs full decode inside the box: %ld of %ld bytes differ\n", differing, compared);
  for (int round = 0; round < 15; round++) {
    double t0 = now(); int W, X;
    for (int i = 0; i < n; i++) free(decode(f[i], 0, 0, 0, 0, 0, &W, &X));
    double t1 = now();
    for (int i = 0; i < n; i++) free(decode(f[i], bt[4 * i], bt[4 * i + 1], bt[4 * i + 2], bt[4 * i + 3], 1, &W, &X));
    double t2 = now();
    for (int i = 0; i < n; i++) resample(boxes[i] + (bt[4 * i + 1] - bx_[i]) * 3, bw_[i] * 3, bt[4 * i + 2], bt[4 * i + 3], out);
    double t3 = now();
    double ms[3] = {(t1 - t0) / n * 1e3, (t2 - t1) / n * 1e3, (t3 - t2) / n * 1e3};
    for (int k = 0; k < 3; k++) if (ms[k] < best[k]) best[k] = ms[k];
  }
  printf("min of 15 rounds: full decode %.2f ms, box decode %.2f ms, C resample %.2f ms\n", best[0], best[1], best[2]);
  return 0;
}
