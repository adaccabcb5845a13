# ccid — build, install and test the ifd-ccid.bundle for pcsc-lite.
#
#   make / make build   release build of libccid.so
#   make bundle         build/ifd-ccid.bundle (Contents/Info.plist + Contents/<OS>/libccid.so)
#   make install        install the bundle into pcscd's drop directory (DESTDIR, PREFIX honoured)
#   make uninstall
#   make header         regenerate include/ccid.h
#   make test           unit, property, simulator and replay tests, ABI checks
#   make check          make test + the end-to-end test under the real pcscd (QEMU guest)
#   make demo           our bundle under Debian's pcscd in a QEMU guest, QEMU's reader and card
#   make fuzz           every fuzz target for FUZZ_TIME seconds each

CARGO      ?= cargo
DESTDIR    ?=
PREFIX     ?=
UNAME      := $(shell uname)
FUZZ_TIME  ?= 60

ifeq ($(UNAME),Darwin)
  ARCH_DIR := MacOS
  LIB_FILE := libccid.dylib
else
  ARCH_DIR := $(UNAME)
  LIB_FILE := libccid.so
endif

# pcscd's drop directory: pkg-config when available, Debian's otherwise;
# PREFIX replaces /usr when given.
USBDROPDIR ?= $(shell pkg-config --variable=usbdropdir libpcsclite 2>/dev/null || echo /usr/lib/pcsc/drivers)
ifneq ($(PREFIX),)
  USBDROPDIR := $(patsubst /usr/%,$(PREFIX)/%,$(USBDROPDIR))
endif

BUNDLE     := build/ifd-ccid.bundle
INSTALLDIR := $(DESTDIR)$(USBDROPDIR)/ifd-ccid.bundle

.PHONY: all build bundle install uninstall header test check e2e demo fuzz clean

all: build

build:
	$(CARGO) build --release -p ccid

bundle: build
	rm -rf $(BUNDLE)
	mkdir -p $(BUNDLE)/Contents/$(ARCH_DIR)
	$(CARGO) run --release -q -p ccid --bin ccid-info-plist > $(BUNDLE)/Contents/Info.plist
	cp target/release/$(LIB_FILE) $(BUNDLE)/Contents/$(ARCH_DIR)/$(LIB_FILE)

install: bundle
	install -d $(INSTALLDIR)/Contents/$(ARCH_DIR)
	install -m 0644 $(BUNDLE)/Contents/Info.plist $(INSTALLDIR)/Contents/Info.plist
	install -m 0755 $(BUNDLE)/Contents/$(ARCH_DIR)/$(LIB_FILE) $(INSTALLDIR)/Contents/$(ARCH_DIR)/$(LIB_FILE)

uninstall:
	rm -f $(INSTALLDIR)/Contents/Info.plist $(INSTALLDIR)/Contents/$(ARCH_DIR)/$(LIB_FILE)
	-rmdir $(INSTALLDIR)/Contents/$(ARCH_DIR) $(INSTALLDIR)/Contents $(INSTALLDIR)

header:
	CCID_UPDATE_HEADER=1 $(CARGO) test -q -p ccid --test header

test: bundle
	$(CARGO) test --workspace
	tests/check-exports.sh $(BUNDLE)/Contents/$(ARCH_DIR)/$(LIB_FILE)

e2e: bundle
	tests/e2e/run.sh --bundle $(CURDIR)/$(BUNDLE)

check: test e2e

demo: bundle
	tests/e2e/run.sh --bundle $(CURDIR)/$(BUNDLE) --drivers ours --controllers uhci

fuzz:
	cd fuzz && for t in $$(RUSTC_BOOTSTRAP=1 $(CARGO) fuzz list); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_TIME) || exit 1; done

clean:
	$(CARGO) clean
	rm -rf build
