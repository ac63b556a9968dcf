SUMMARY = "intercom firmware image for the Raspberry Pi 4"
DESCRIPTION = "A minimal, read-only system that boots into the intercom service: \
               core-image-minimal plus intercom, BlueZ and the radio firmware."
HOMEPAGE = "https://intercom.invalid/"
BUGTRACKER = "https://intercom.invalid/issues"
SECTION = "images"
CVE_PRODUCT = "intercom"
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot intercom bluez5 linux-firmware-rpidistro-bcm43455 \
                 ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_LINGUAS = ""
IMAGE_FEATURES += "read-only-rootfs"

inherit core-image
