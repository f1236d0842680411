// The password check of `recspark sql-server` (catalog.sql_auth: password): HiveServer2's CUSTOM
// authentication (hive.server2.authentication=CUSTOM) calls Authenticate for every connection.
// recspark/io/sql_server.py hands it the one user and a salted PBKDF2 hash of the password
// (never the password) through `configure`, before the server starts; until then every login
// is refused. Built by scripts/build_sql_auth.sh (make setup) into recspark-sql-auth.jar.
package recspark.sqlauth;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.HexFormat;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.security.sasl.AuthenticationException;
import org.apache.hive.service.auth.PasswdAuthenticationProvider;

public final class PasswordProvider implements PasswdAuthenticationProvider {
  private record Credential(byte[] user, byte[] salt, byte[] hash, int iterations) {}

  private static volatile Credential credential;

  /** The one user allowed in, and PBKDF2-HMAC-SHA256(password, salt, iterations) in hex. */
  public static void configure(String user, String saltHex, String hashHex, int iterations) {
    HexFormat hex = HexFormat.of();
    credential = new Credential(
        user.getBytes(StandardCharsets.UTF_8), hex.parseHex(saltHex), hex.parseHex(hashHex),
        iterations);
  }

  @Override
  public void Authenticate(String user, String password) throws AuthenticationException {
    Credential expected = credential;
    if (expected == null) {
      throw new AuthenticationException("recspark: the SQL server has no password configured");
    }
    if (user == null || password == null || password.isEmpty()) {
      throw new AuthenticationException("recspark: a user name and password are required");
    }
    byte[] given = hash(password, expected);
    // Both compared in constant time, and both always: the answer does not tell which was wrong.
    boolean userMatches = MessageDigest.isEqual(user.getBytes(StandardCharsets.UTF_8), expected.user());
    boolean passwordMatches = MessageDigest.isEqual(given, expected.hash());
    if (!(userMatches & passwordMatches)) {
      throw new AuthenticationException("recspark: wrong user name or password");
    }
  }

  private static byte[] hash(String password, Credential expected) throws AuthenticationException {
    PBEKeySpec spec = new PBEKeySpec(
        password.toCharArray(), expected.salt(), expected.iterations(), expected.hash().length * 8);
    try {
      return SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
    } catch (GeneralSecurityException e) {
      throw new AuthenticationException("recspark: cannot check the password", e);
    } finally {
      spec.clearPassword();
    }
  }
}
