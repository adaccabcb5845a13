# ccid: build, install and test the ifd-ccid.bundle for pcsc-lite.
#
#   make / make build   release build of the driver library and ccid-info-plist
#   make bundle         $(BUNDLE): Contents/Info.plist + Contents/<OS>/libccid.so
#   make install        install the bundle into pcscd's drop directory
#                       (builds it first unless it is there already, so
#                       `make && sudo make install` does not need cargo as root)
#   make uninstall      remove it again
#   make header         regenerate include/ccid.h from src/ffi (cbindgen)
#   make test           the workspace's tests, then the exported symbols
#   make e2e            the end-to-end test under the real pcscd (QEMU guest)
#   make check          make test + make e2e
#   make demo           our bundle under Debian's pcscd in a QEMU guest
#   make fuzz           every fuzz target for FUZZ_TIME seconds each
#
# Variables: DESTDIR, PREFIX (replaces /usr in the drop directory),
# USBDROPDIR (default: pkg-config's usbdropdir of libpcsclite, else
# /usr/lib/pcsc/drivers), PROFILE (release, or debug for quicker builds),
# BUNDLE (where `make bundle` assembles it), CARGO, CARGO_TARGET_DIR.
#
# The Info.plist comes from build.rs (generated from supported_readers.txt
# and bundle/Info.plist.in); the ccid-info-plist program built with the
# library prints it, so nothing depends on where Cargo keeps build outputs.

CARGO      ?= cargo
DESTDIR    ?=
PREFIX     ?=
PROFILE    ?= release
FUZZ_TIME  ?= 60
UNAME      := $(shell uname)

ifeq ($(UNAME),Darwin)
  ARCH_DIR := MacOS
  LIB_FILE := libccid.dylib
else
  ARCH_DIR := $(UNAME)
  LIB_FILE := libccid.so
endif

# pcscd's drop directory; PREFIX replaces /usr when given.
USBDROPDIR ?= $(shell pkg-config --variable=usbdropdir libpcsclite 2>/dev/null || echo /usr/lib/pcsc/drivers)
ifneq ($(PREFIX),)
  USBDROPDIR := $(patsubst /usr/%,$(PREFIX)/%,$(USBDROPDIR))
endif

# Cargo's output directory for PROFILE (the dev profile builds into debug/).
TARGET_DIR   := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
ifneq ($(filter dev debug,$(PROFILE)),)
  PROFILE_FLAG :=
  OUT          := $(TARGET_DIR)/debug
else
  PROFILE_FLAG := --profile $(PROFILE)
  OUT          := $(TARGET_DIR)/$(PROFILE)
endif

# The drop directory is compiled in (the driver looks for its Info.plist
# there when it cannot find it next to itself); Debian's is the default.
DROPDIR_ENV := $(if $(filter-out /usr/lib/pcsc/drivers,$(USBDROPDIR)),CCID_USBDROPDIR=$(USBDROPDIR))

BUNDLE     ?= build/ifd-ccid.bundle
BUNDLE_LIB := $(BUNDLE)/Contents/$(ARCH_DIR)/$(LIB_FILE)
BUNDLE_PLIST := $(BUNDLE)/Contents/Info.plist
INSTALLDIR := $(DESTDIR)$(USBDROPDIR)/ifd-ccid.bundle

.PHONY: all build bundle install uninstall header test e2e check demo fuzz clean

all: build

build:
	$(DROPDIR_ENV) $(CARGO) build $(PROFILE_FLAG) -p ccid --lib --bin ccid-info-plist

bundle: build
	rm -rf $(BUNDLE)
	mkdir -p $(BUNDLE)/Contents/$(ARCH_DIR)
	$(OUT)/ccid-info-plist > $(BUNDLE_PLIST).tmp
	mv $(BUNDLE_PLIST).tmp $(BUNDLE_PLIST)
	cp $(OUT)/$(LIB_FILE) $(BUNDLE_LIB)

install:
	@if [ ! -f $(BUNDLE_LIB) ] || [ ! -f $(BUNDLE_PLIST) ]; then $(MAKE) bundle; fi
	install -d $(INSTALLDIR)/Contents/$(ARCH_DIR)
	install -m 0644 $(BUNDLE_PLIST) $(INSTALLDIR)/Contents/Info.plist
	install -m 0755 $(BUNDLE_LIB) $(INSTALLDIR)/Contents/$(ARCH_DIR)/$(LIB_FILE)

uninstall:
	rm -f $(INSTALLDIR)/Contents/Info.plist $(INSTALLDIR)/Contents/$(ARCH_DIR)/$(LIB_FILE)
	-rmdir $(INSTALLDIR)/Contents/$(ARCH_DIR) $(INSTALLDIR)/Contents $(INSTALLDIR)

header:
	CCID_UPDATE_HEADER=1 $(CARGO) test -q -p ccid --test header

test: bundle
	$(CARGO) test --workspace
	tests/check-exports.sh $(BUNDLE_LIB)

e2e: bundle
	tests/e2e/run.sh --bundle $(abspath $(BUNDLE))

check: test e2e

demo: bundle
	tests/e2e/run.sh --bundle $(abspath $(BUNDLE)) --drivers ours --controllers uhci

fuzz:
	cd fuzz && for t in $$(RUSTC_BOOTSTRAP=1 $(CARGO) fuzz list); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_TIME) || exit 1; done

clean:
	$(CARGO) clean
	rm -rf build

# --- bench-multislot: aggregate APDU/s of multi-slot virtual readers ------
# through the IFDH functions, one thread per slot (ccid-sim bench-multislot -h).
# BENCH_ARGS, e.g. BENCH_ARGS="--apdus 500 --card-ms 5".
BENCH_ARGS ?=
.PHONY: bench-multislot
bench-multislot:
	$(CARGO) run --release -q -p ccid-sim -- bench-multislot $(BENCH_ARGS)
# --- end of bench-multislot ---
