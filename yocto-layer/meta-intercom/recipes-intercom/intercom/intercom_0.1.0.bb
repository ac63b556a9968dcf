# nooelint: oelint.var.bbclassextend - firmware for the target only; no native use
SUMMARY = "Secure, serverless voice and text intercom box"
DESCRIPTION = "Two boxes pair with a 4-digit PIN (SPAKE2) and talk over an \
               end-to-end encrypted WebRTC call. Nothing is logged or stored."
HOMEPAGE = "https://intercom.invalid/"
BUGTRACKER = "https://intercom.invalid/issues"
SECTION = "net"
CVE_PRODUCT = "intercom"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE-MIT;md5=98ef3289132e608aba01c96e3ed38255 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# libopus is built by the opus crate with CMake; the ALSA backend links alsa-lib and
# the Bluetooth LE transport (bluer) links libdbus.
DEPENDS += "alsa-lib cmake-native dbus"

# Where the sources come from; a kas file or local.conf may point elsewhere.
INTERCOM_GIT_URI ??= "git://intercom.invalid/intercom.git;protocol=https;branch=main"
SRC_URI = "${INTERCOM_GIT_URI}"
SRCREV = "${INTERCOM_SRCREV}"
INTERCOM_SRCREV ??= "0000000000000000000000000000000000000000"

# The board profile the image's config names (built into the binary; also installed
# under ${datadir}/intercom/boards for reference). Set it to the board the MACHINE is.
INTERCOM_BOARD ??= "rpi4-ssd1306"

require intercom-crates.inc

inherit cargo cargo-update-recipe-crates systemd useradd

# The workspace's firmware package only: its other members (the security core, media,
# signaling) are built as its dependencies, and the test support is not for the box.
CARGO_BUILD_FLAGS:append = " --package intercom"

SYSTEMD_SERVICE:${PN} = "intercom.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system gpio; --system spi; --system i2c"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir /nonexistent \
                       --shell /sbin/nologin --user-group --groups gpio,spi,i2c,audio intercom"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/intercom.service ${D}${systemd_system_unitdir}/
    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/systemd/intercom-dbus.conf ${D}${datadir}/dbus-1/system.d/intercom.conf
    install -d ${D}${sysconfdir}/intercom
    sed -e 's/^board = .*/board = "${INTERCOM_BOARD}"/' ${S}/systemd/intercom.toml \
        > ${D}${sysconfdir}/intercom/intercom.toml
    chmod 0644 ${D}${sysconfdir}/intercom/intercom.toml
    install -d ${D}${datadir}/intercom/boards
    install -m 0644 ${S}/board/*.toml ${D}${datadir}/intercom/boards/
}

FILES:${PN} += "${datadir}/dbus-1/system.d/intercom.conf"
CONFFILES:${PN} = "${sysconfdir}/intercom/intercom.toml"
RDEPENDS:${PN} += "bluez5"
