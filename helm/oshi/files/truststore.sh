# shellcheck shell=sh
# The init container's command (POSIX sh, in the client's own image): a JVM truststore holding the JVM's own CAs plus
# the MQTT server's CA (mqttCaCert), for a platform with a private CA. The Java SDK ignores WIOTP_OPTIONS_MQTT_CAFILE
# and trusts what the JVM trusts; JAVA_TOOL_OPTIONS then points the client's JVM at this truststore.
set -eu
java_home=${JAVA_HOME:?the image sets no JAVA_HOME}
cacerts=$java_home/jre/lib/security/cacerts  # a JDK 8 image; a JRE or JDK 9+ keeps it under lib/security
[ -r "$cacerts" ] || cacerts=$java_home/lib/security/cacerts
cp "$cacerts" "$TRUSTSTORE"
chmod 0644 "$TRUSTSTORE"
# "changeit" is the JDK's default: a truststore holds only public certificates, its password guards no secret.
keytool -importcert -noprompt -alias mqtt-ca -file "$WIOTP_OPTIONS_MQTT_CAFILE" -keystore "$TRUSTSTORE" -storepass changeit
