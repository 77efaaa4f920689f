// Says whether libjpeg-turbo's development files are installed (jpeglib.h and libjpeg.so, Debian's
// libjpeg62-turbo-dev), for binding.gyp's condition on the image module (native/image): without
// them the module is not built and the loader decodes with sharp, so a missing package never fails
// the install. Prints 1 or 0; MASKSUB_NO_JPEG=1 says 0 (to check the build and tests without it).
import { existsSync } from 'node:fs';

const includes = ['/usr/include', '/usr/local/include', process.env.JPEG_INCLUDE].filter(Boolean);
const libraries = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib', process.env.JPEG_LIB].filter(Boolean);
const header = includes.some((dir) => existsSync(`${dir}/jpeglib.h`));
const library = libraries.some((dir) => existsSync(`${dir}/libjpeg.so`));
process.stdout.write(header && library && process.env.MASKSUB_NO_JPEG !== '1' ? '1' : '0');
